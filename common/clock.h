// File: common/clock.h
// Time as a seam. Lease expiry, deadlines, waits and ledger timestamps read a Clock so tests can
// use a SimulatedClock and advance it instead of sleeping.
//
//   absl::MutexLock lock(&mu_);
//   if (!clock->AwaitWithDeadline(mu_, absl::Condition(&done_), deadline)) return Timeout();
//
// What stays on the wall clock: gRPC and socket deadlines (the kernel and gRPC keep real
// time) and durations measured for reports (latency, throughput).
//
// Thread safety: both implementations are thread-safe.
#ifndef LOOM_COMMON_CLOCK_H_
#define LOOM_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace loom {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // With `mu` held: waits until `cond` holds or this clock reaches `deadline`, and returns
  // whether `cond` holds. `mu` is released while waiting, as by absl::Mutex::Await.
  virtual bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond,
                                 absl::Time deadline) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // The process-wide real clock; never deleted.
  static Clock* Real();
};

// A clock that moves only when told to. A waiter wakes at once when its condition holds, and
// within a millisecond (of real time) after Advance or Set takes the clock past its deadline.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : now_(start) {}
  absl::Time Now() const override;
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond,
                         absl::Time deadline) const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COMMON_CLOCK_H_
