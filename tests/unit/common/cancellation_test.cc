#include "common/cancellation.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(CancellationTest, RunsCallbacksOnceAndWakesWaiters) {
  Cancellation cancel;
  int calls = 0;
  cancel.OnCancel([&] { ++calls; });
  std::atomic<bool> woke{false};
  std::thread waiter([&] { woke = cancel.WaitFor(absl::InfiniteDuration()); });
  cancel.Cancel();
  cancel.Cancel();
  waiter.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(cancel.IsCancelled());
}

TEST(CancellationTest, RemovedCallbackDoesNotRun) {
  Cancellation cancel;
  bool ran = false;
  int id = cancel.OnCancel([&] { ran = true; });
  cancel.RemoveCallback(id);
  cancel.Cancel();
  EXPECT_FALSE(ran);
}

TEST(CancellationTest, CallbackAfterCancelRunsInline) {
  Cancellation cancel;
  cancel.Cancel();
  bool ran = false;
  EXPECT_EQ(cancel.OnCancel([&] { ran = true; }), -1);
  EXPECT_TRUE(ran);
}

TEST(CancellationTest, WaitForTimesOutWhenNotCancelled) {
  Cancellation cancel;
  EXPECT_FALSE(cancel.WaitFor(absl::ZeroDuration()));
}

}  // namespace
}  // namespace loom
