// File: common/cancellation.h
// A one-shot cancellation signal shared by whoever runs a piece of work and whoever may stop
// it (client disconnects, request deadlines, shutdown).
//
//   Cancellation cancel;
//   int id = cancel.OnCancel([&] { context.TryCancel(); });
//   ...
//   cancel.RemoveCallback(id);
//
// Thread-safe. Callbacks run once, on the thread that calls Cancel() (or inline in OnCancel
// when already cancelled), without the internal lock held. RemoveCallback waits for running
// callbacks to return, so a callback must not call RemoveCallback itself.
#ifndef LOOM_COMMON_CANCELLATION_H_
#define LOOM_COMMON_CANCELLATION_H_

#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace loom {

class Cancellation {
 public:
  Cancellation() = default;
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  void Cancel();
  bool IsCancelled() const;

  // Waits until cancelled or `timeout` elapsed; true if cancelled.
  bool WaitFor(absl::Duration timeout) const;
  // Waits until cancelled or `clock` reaches `deadline`; true if cancelled.
  bool WaitUntil(absl::Time deadline, const Clock& clock) const;

  // Registers `fn` to run on cancellation; returns an id for RemoveCallback. Runs `fn` at once
  // (and returns -1) if already cancelled.
  // Const: listening does not change whether the work is cancelled.
  int OnCancel(std::function<void()> fn) const;
  void RemoveCallback(int id) const;

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  mutable bool running_ ABSL_GUARDED_BY(mu_) = false;  // Cancel() is running callbacks
  mutable int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::map<int, std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COMMON_CANCELLATION_H_
