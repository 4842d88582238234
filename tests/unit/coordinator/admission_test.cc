#include "coordinator/front/admission.h"

#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

// A request that waits on its own thread until admitted or refused, then holds its ticket
// until Finish().
class Waiting {
 public:
  Waiting(Admission* admission, std::string client, absl::Time deadline = absl::InfiniteFuture())
      : thread_([this, admission, client, deadline] {
          absl::StatusOr<Admission::Ticket> ticket = admission->Acquire(client, deadline, &cancel_);
          {
            absl::MutexLock lock(&mu_);
            status_ = ticket.status();
            done_ = true;
          }
          if (ticket.ok()) finish_.WaitFor(absl::Seconds(30));
        }) {}
  ~Waiting() {
    finish_.Cancel();
    cancel_.Cancel();
    thread_.join();
  }
  bool Admitted() {
    absl::MutexLock lock(&mu_);
    return done_ && status_.ok();
  }
  std::optional<absl::Status> Result() {
    absl::MutexLock lock(&mu_);
    if (!done_) return std::nullopt;
    return status_;
  }
  void Finish() { finish_.Cancel(); }
  void CancelWait() { cancel_.Cancel(); }

 private:
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  Cancellation cancel_, finish_;
  std::thread thread_;
};

TEST(AdmissionTest, FreeSlotsAdmitAtOnceAndATicketFreesItsSlot) {
  Admission admission({.slots = 2, .max_waiting = 2, .max_running_per_client = 0});
  {
    auto a = admission.Acquire("client:a", absl::InfiniteFuture(), nullptr);
    auto b = admission.Acquire("client:b", absl::InfiniteFuture(), nullptr);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(admission.running(), 2);
    // A full door with a deadline already passed: waits for nothing.
    auto late = admission.Acquire("client:c", absl::Now(), nullptr);
    EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_THAT(late.status().message(), HasSubstr("waited for a free slot"));
  }
  EXPECT_EQ(admission.running(), 0);
  EXPECT_EQ(admission.waiting(), 0);
}

TEST(AdmissionTest, AClientPastItsOwnLimitIsRefusedAtOnce) {
  Admission admission({.slots = 8, .max_waiting = 8, .max_running_per_client = 1});
  auto first = admission.Acquire("client:alice", absl::InfiniteFuture(), nullptr);
  ASSERT_TRUE(first.ok());
  auto second = admission.Acquire("client:alice", absl::InfiniteFuture(), nullptr);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(second.status().message(), HasSubstr("client:alice already has 1"));
  EXPECT_TRUE(admission.Acquire("client:bob", absl::InfiniteFuture(), nullptr).ok());
}

// The report: 64 slow calls of one key made every other client get RESOURCE_EXHAUSTED. Now a
// client that floods the waiting room keeps only its share of it, and another client's request
// gets a place and the next free slot.
TEST(AdmissionTest, OneClientFillingTheWaitingRoomCannotLockOthersOut) {
  Admission admission({.slots = 1, .max_waiting = 4, .max_running_per_client = 0});
  auto running = std::make_optional(*admission.Acquire("client:flood", absl::InfiniteFuture(), nullptr));
  std::vector<std::unique_ptr<Waiting>> flood;
  for (int i = 0; i < 4; ++i) flood.push_back(std::make_unique<Waiting>(&admission, "client:flood"));
  ASSERT_TRUE(testing::WaitFor([&] { return admission.waiting() == 4; }, absl::Seconds(10)));
  // Its fifth waiter is past its share of the room (all of it, while it waits alone).
  auto more = admission.Acquire("client:flood", absl::InfiniteFuture(), nullptr);
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(more.status().message(), HasSubstr("share of the waiting room"));
  // Another client still gets a place, and the flood's share shrinks to half the room.
  Waiting other(&admission, "client:other");
  ASSERT_TRUE(testing::WaitFor([&] { return admission.waiting() == 5; }, absl::Seconds(10)));
  EXPECT_EQ(admission.Acquire("client:flood", absl::InfiniteFuture(), nullptr).status().code(),
            absl::StatusCode::kResourceExhausted);
  // The next free slot goes to the other client, not to the flood's older waiters: clients
  // take turns.
  running.reset();
  ASSERT_TRUE(testing::WaitFor([&] { return other.Admitted(); }, absl::Seconds(10)));
  for (auto& w : flood) EXPECT_FALSE(w->Admitted());
  // Then the flood's waiters, one per freed slot.
  other.Finish();
  auto admitted = [&] {
    int n = 0;
    for (auto& w : flood) n += w->Admitted();
    return n;
  };
  ASSERT_TRUE(testing::WaitFor([&] { return admitted() == 1; }, absl::Seconds(10)));
  EXPECT_EQ(admission.waiting(), 3);
}

TEST(AdmissionTest, FreedSlotsGoToClientsInTurnSkippingThoseAtTheirLimit) {
  Admission admission({.slots = 2, .max_waiting = 8, .max_running_per_client = 1});
  auto a = std::make_optional(*admission.Acquire("client:a", absl::InfiniteFuture(), nullptr));
  auto b = std::make_optional(*admission.Acquire("client:b", absl::InfiniteFuture(), nullptr));
  Waiting c(&admission, "client:c");
  ASSERT_TRUE(testing::WaitFor([&] { return admission.waiting() == 1; }, absl::Seconds(10)));
  // a's next request is refused (its limit), not queued; c gets a's slot.
  EXPECT_EQ(admission.Acquire("client:a", absl::InfiniteFuture(), nullptr).status().code(),
            absl::StatusCode::kResourceExhausted);
  a.reset();
  ASSERT_TRUE(testing::WaitFor([&] { return c.Admitted(); }, absl::Seconds(10)));
  EXPECT_EQ(admission.running(), 2);
}

TEST(AdmissionTest, AWaitEndsWhenTheClientGoesAwayAndLeavesNothingBehind) {
  Admission admission({.slots = 1, .max_waiting = 2, .max_running_per_client = 0});
  auto running = std::make_optional(*admission.Acquire("client:a", absl::InfiniteFuture(), nullptr));
  Waiting gone(&admission, "client:b");
  ASSERT_TRUE(testing::WaitFor([&] { return admission.waiting() == 1; }, absl::Seconds(10)));
  gone.CancelWait();
  ASSERT_TRUE(testing::WaitFor([&] { return gone.Result().has_value(); }, absl::Seconds(10)));
  EXPECT_EQ(gone.Result()->code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(admission.waiting(), 0);
  // Already cancelled: refused without waiting.
  Cancellation cancelled;
  cancelled.Cancel();
  EXPECT_EQ(admission.Acquire("client:c", absl::InfiniteFuture(), &cancelled).status().code(),
            absl::StatusCode::kCancelled);
  running.reset();
  EXPECT_EQ(admission.running(), 0);
}

// Many threads of many clients: every ticket is accounted for, nobody waits forever.
TEST(AdmissionTest, ManyClientsAtOnceAllFinishAndTheCountsReturnToZero) {
  Admission admission({.slots = 3, .max_waiting = 64, .max_running_per_client = 2});
  std::vector<std::thread> threads;
  std::atomic<int> admitted{0}, refused{0};
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 20; ++k) {
        auto t = admission.Acquire(absl::StrCat("client:", i % 5), absl::InfiniteFuture(), nullptr);
        (t.ok() ? admitted : refused)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted + refused, 32 * 20);
  EXPECT_GT(admitted, 0);
  EXPECT_EQ(admission.running(), 0);
  EXPECT_EQ(admission.waiting(), 0);
}

}  // namespace
}  // namespace loom
