// File: common/thread_pool.h
// A fixed set of threads running queued closures in FIFO order. Used where work must block
// (a model call, a disk flush) so that gRPC reactor threads never do.
//
// Thread-safe. The destructor runs every closure already scheduled, then joins.
#ifndef LOOM_COMMON_THREAD_POOL_H_
#define LOOM_COMMON_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace loom {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> fn);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace loom

#endif  // LOOM_COMMON_THREAD_POOL_H_
