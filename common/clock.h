// File: common/clock.h
// Time as a seam. Lease expiry, deadlines and ledger timestamps read a Clock so tests can use a
// SimulatedClock and advance it instead of sleeping.
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

  // The process-wide real clock; never deleted.
  static Clock* Real();
};

// A clock that moves only when told to.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : now_(start) {}
  absl::Time Now() const override;
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COMMON_CLOCK_H_
