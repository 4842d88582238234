#include "common/clock.h"

namespace loom {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond,
                         absl::Time deadline) const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return mu.AwaitWithDeadline(cond, deadline);
  }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

absl::Time SimulatedClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool SimulatedClock::AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond,
                                       absl::Time deadline) const {
  // The condition wakes the waiter when whoever changes it releases `mu`; the simulated time
  // cannot (Advance holds another mutex), so it is looked at every millisecond.
  while (!cond.Eval()) {
    if (Now() >= deadline) return false;
    mu.AwaitWithTimeout(cond, absl::Milliseconds(1));
  }
  return true;
}

void SimulatedClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void SimulatedClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace loom
