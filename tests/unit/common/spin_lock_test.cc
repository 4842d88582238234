#include "common/spin_lock.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace loom {
namespace {

// Mutual exclusion holds whether a waiter spins or falls back to blocking: four threads each
// add 20,000 under the lock, some holding it long enough that the others exhaust their spins.
TEST(SpinningMutexLockTest, ExcludesAndFallsBackToBlocking) {
  absl::Mutex mu;
  int64_t counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20'000; ++i) {
        SpinningMutexLock lock(&mu);
        const int64_t seen = counter;
        if (t == 0 && i % 1000 == 0) {
          volatile int sink = 0;
          for (int k = 0; k < 20'000; ++k) sink = sink + k;  // hold it past the others' spins
        }
        counter = seen + 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, 80'000);
  if (mu.TryLock()) {  // released by every scope
    mu.Unlock();
  } else {
    ADD_FAILURE() << "the lock is still held";
  }
}

}  // namespace
}  // namespace loom
