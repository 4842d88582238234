// File: common/thread_cache.h
// Runs each closure at once on a thread of its own, reusing threads that have finished their
// previous closure. For work that blocks for a long time (a call to a device), where a fixed
// pool could queue one request's sub-task behind another's, and where starting a thread per
// closure costs more than the coordinator's own work (~30 us on the 2-core bench machine
// against ~6 us to wake an idle thread).
//
//   ThreadCache threads;
//   threads.Run([&] { CallDevice(...); });
//
// Threads idle for `idle_timeout` end, so the cache shrinks back after a burst. Thread-safe.
// The destructor waits for running closures, then joins every thread.
#ifndef LOOM_COMMON_THREAD_CACHE_H_
#define LOOM_COMMON_THREAD_CACHE_H_

#include <deque>
#include <functional>
#include <list>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace loom {

class ThreadCache {
 public:
  explicit ThreadCache(absl::Duration idle_timeout = absl::Seconds(30));
  ~ThreadCache();
  ThreadCache(const ThreadCache&) = delete;
  ThreadCache& operator=(const ThreadCache&) = delete;

  // Starts `fn` now: on an idle thread if there is one, else on a new thread.
  void Run(std::function<void()> fn);

  // Threads alive (running a closure or idle), and those of them idle.
  int threads() const;
  int idle() const;

 private:
  void Loop(std::list<std::thread>::iterator self, std::function<void()> first);
  // Joins threads that ended on their idle timeout. Called without mu_ held.
  void JoinEnded();

  const absl::Duration idle_timeout_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> handed_ ABSL_GUARDED_BY(mu_);  // taken by idle threads
  std::list<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> ended_ ABSL_GUARDED_BY(mu_);  // to be joined
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace loom

#endif  // LOOM_COMMON_THREAD_CACHE_H_
