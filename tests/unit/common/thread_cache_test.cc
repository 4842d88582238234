#include "common/thread_cache.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

// Polls `done` until it holds or 10 s pass (no sleeping: the state changes on other threads).
template <typename F>
bool Eventually(F done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(ThreadCacheTest, EveryClosureRunsAtOnceEvenWhenAllBlock) {
  // Eight closures that each wait for all eight to have started: a pool that queued any of
  // them behind another would never let them finish.
  ThreadCache threads;
  constexpr int kClosures = 8;
  absl::BlockingCounter started(kClosures), finished(kClosures);
  absl::Notification all_started;
  for (int i = 0; i < kClosures; ++i) {
    threads.Run([&] {
      started.DecrementCount();
      all_started.WaitForNotificationWithTimeout(absl::Seconds(10));
      finished.DecrementCount();
    });
  }
  started.Wait();
  all_started.Notify();
  finished.Wait();
  EXPECT_EQ(threads.threads(), kClosures);
}

TEST(ThreadCacheTest, AFinishedThreadTakesTheNextClosure) {
  ThreadCache threads;
  absl::Notification first;
  threads.Run([&] { first.Notify(); });
  first.WaitForNotification();
  ASSERT_TRUE(Eventually([&] { return threads.idle() == 1; }));
  absl::Notification second;
  std::thread::id second_thread;
  threads.Run([&] {
    second_thread = std::this_thread::get_id();
    second.Notify();
  });
  second.WaitForNotification();
  EXPECT_EQ(threads.threads(), 1) << "the idle thread ran it; no new thread";
  EXPECT_NE(second_thread, std::this_thread::get_id());
}

TEST(ThreadCacheTest, IdleThreadsEndAfterTheirTimeout) {
  ThreadCache threads(absl::Milliseconds(1));
  absl::Notification ran;
  threads.Run([&] { ran.Notify(); });
  ran.WaitForNotification();
  EXPECT_TRUE(Eventually([&] { return threads.threads() == 0; }));
  // The cache still works after shrinking to nothing.
  absl::Notification again;
  threads.Run([&] { again.Notify(); });
  EXPECT_TRUE(again.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(ThreadCacheTest, DestructionWaitsForRunningClosures) {
  std::atomic<bool> finished{false};
  absl::Notification started, never;
  {
    ThreadCache threads;
    threads.Run([&] {
      started.Notify();
      // Busy for 50 ms (nobody notifies `never`): the destructor below runs meanwhile.
      never.WaitForNotificationWithTimeout(absl::Milliseconds(50));
      finished = true;
    });
    started.WaitForNotification();
  }
  EXPECT_TRUE(finished) << "the destructor returned while a closure was still running";
}

}  // namespace
}  // namespace loom
