// File: common/spin_lock.h
// SpinningMutexLock: an absl::MutexLock that first spins briefly on TryLock. For locks held a
// few microseconds by threads on other cores (the registry's, shared by selections and
// heartbeats): a waiter that blocks in the kernel pays a futex sleep and wake-up, tens of
// microseconds on a VM, for a lock that would have been free in one or two. Bounded: after
// kSpins failed tries (a few microseconds: a pause is 10-140 cycles depending on the CPU) it
// blocks like MutexLock; on a single CPU, where the holder cannot run while we spin, it
// blocks at once.
#ifndef LOOM_COMMON_SPIN_LOCK_H_
#define LOOM_COMMON_SPIN_LOCK_H_

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace loom {

class ABSL_SCOPED_LOCKABLE SpinningMutexLock {
 public:
  static constexpr int kSpins = 200;

  explicit SpinningMutexLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    static const int spins = std::thread::hardware_concurrency() > 1 ? kSpins : 0;
    for (int i = 0; i < spins; ++i) {
      if (mu_->TryLock()) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    mu_->Lock();
  }
  ~SpinningMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  SpinningMutexLock(const SpinningMutexLock&) = delete;
  SpinningMutexLock& operator=(const SpinningMutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace loom

#endif  // LOOM_COMMON_SPIN_LOCK_H_
