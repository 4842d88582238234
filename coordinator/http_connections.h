// File: coordinator/http_connections.h
// How the HTTP front door gives connections threads: each accepted connection runs at once on
// a thread of its own (reused from a ThreadCache), up to `max_connections` at a time; past
// that, connections wait in FIFO order for one to close. cpp-httplib's default is a fixed pool
// of 8 threads where a keep-alive connection holds a thread while idle, so eight SDK clients
// or eight open streams starved /healthz and /metrics for seconds. A thread blocked in poll()
// costs a stack's worth of address space and a few KiB of memory; hundreds are cheap.
//
//   server.new_task_queue = [] { return new ConnectionQueue(4096); };  // httplib owns it
//
// Thread-safe (httplib enqueues from its accept thread). shutdown() waits until every running
// and waiting connection has been served and closed.
#ifndef LOOM_COORDINATOR_HTTP_CONNECTIONS_H_
#define LOOM_COORDINATOR_HTTP_CONNECTIONS_H_

#include <httplib.h>

#include <deque>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_cache.h"

namespace loom {

class ConnectionQueue : public httplib::TaskQueue {
 public:
  explicit ConnectionQueue(int max_connections) : max_connections_(max_connections) {}
  ~ConnectionQueue() override { shutdown(); }

  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

  int active() const;
  int waiting() const;

 private:
  void Serve(std::function<void()> fn);

  const int max_connections_;
  mutable absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::function<void()>> waiting_ ABSL_GUARDED_BY(mu_);
  ThreadCache threads_;  // declared last: destroyed (joined) first
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_HTTP_CONNECTIONS_H_
