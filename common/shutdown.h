// File: common/shutdown.h
// Clean stop on SIGINT/SIGTERM for daemons. Call BlockShutdownSignals() first thing in main,
// before any thread starts, so the signals are only ever delivered to WaitForShutdown().
//
//   loom::BlockShutdownSignals();
//   ... start servers ...
//   loom::ShutdownWaiter waiter;          // also lets other threads ask for a stop
//   int code = waiter.Wait();             // 0 on a signal, the code given to RequestStop()
#ifndef LOOM_COMMON_SHUTDOWN_H_
#define LOOM_COMMON_SHUTDOWN_H_

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace loom {

void BlockShutdownSignals();

// Thread-safe. Waits for SIGINT/SIGTERM or for RequestStop().
class ShutdownWaiter {
 public:
  ShutdownWaiter();
  ~ShutdownWaiter();

  // Returns the exit code: 0 after a signal, else the one given to RequestStop.
  int Wait();
  void RequestStop(int exit_code);

 private:
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int exit_code_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread signal_thread_;
};

}  // namespace loom

#endif  // LOOM_COMMON_SHUTDOWN_H_
