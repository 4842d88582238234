// GroupCommitter on its own, with a commit function that records its batches: who leads, what
// a batch holds, how one write's failure and a commit's failure reach the callers.
#include "ledger/group_commit.h"

#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

struct FakeTxn {
  int batch = 0;  // which commit runs the write
};

class Recorder {
 public:
  using Committer = GroupCommitter<FakeTxn>;

  // The commit: runs every write with the batch's number; `fail_commit` fails the whole batch.
  absl::Status Commit(absl::Span<Committer::Op* const> ops) {
    int batch;
    {
      absl::MutexLock lock(&mu_);
      batch = static_cast<int>(sizes_.size());
      sizes_.push_back(static_cast<int>(ops.size()));
      threads_.push_back(std::this_thread::get_id());
    }
    if (batch == 0) {
      first_started_.Notify();
      if (hold_first_ != nullptr) hold_first_->WaitForNotification();
    }
    FakeTxn txn{batch};
    for (Committer::Op* op : ops) op->status = op->fn(txn);
    return fail_commit_ ? absl::UnavailableError("disk full") : absl::OkStatus();
  }

  std::vector<int> sizes() {
    absl::MutexLock lock(&mu_);
    return sizes_;
  }
  std::vector<std::thread::id> threads() {
    absl::MutexLock lock(&mu_);
    return threads_;
  }
  // The first commit has begun (its write is off the queue).
  bool AwaitFirstCommit() { return first_started_.WaitForNotificationWithTimeout(absl::Seconds(10)); }
  absl::Notification* hold_first_ = nullptr;
  bool fail_commit_ = false;

 private:
  absl::Notification first_started_;
  absl::Mutex mu_;
  std::vector<int> sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

Recorder::Committer::Options NoWait(int max_batch = 256) {
  return {.max_batch = max_batch, .wait = absl::ZeroDuration()};
}

TEST(GroupCommitTest, ALoneWriteCommitsAtOnceOnItsOwnThread) {
  Recorder rec;
  Recorder::Committer committer(NoWait(), [&](auto ops) { return rec.Commit(ops); });
  int seen = -1;
  EXPECT_TRUE(committer.Write([&](FakeTxn& t) {
    seen = t.batch;
    return absl::OkStatus();
  }).ok());
  EXPECT_EQ(seen, 0);
  EXPECT_EQ(rec.sizes(), std::vector<int>({1}));
  EXPECT_EQ(rec.threads(), std::vector<std::thread::id>({std::this_thread::get_id()}));
}

// While one commit runs, four writers queue; the first of them leads one batch of all four.
TEST(GroupCommitTest, WritesQueuedDuringACommitShareTheNextOne) {
  Recorder rec;
  absl::Notification hold;
  rec.hold_first_ = &hold;
  Recorder::Committer committer(NoWait(), [&](auto ops) { return rec.Commit(ops); });
  std::thread first([&] { EXPECT_TRUE(committer.Write([](FakeTxn&) { return absl::OkStatus(); }).ok()); });
  std::vector<int> batch_of(4, -1);
  std::vector<std::thread> writers;
  ASSERT_TRUE(rec.AwaitFirstCommit());
  for (int i = 0; i < 4; ++i) {
    writers.emplace_back([&, i] {
      EXPECT_TRUE(committer.Write([&, i](FakeTxn& t) {
        batch_of[i] = t.batch;
        return absl::OkStatus();
      }).ok());
    });
  }
  ASSERT_TRUE(committer.AwaitQueued(4, absl::Seconds(10)));
  hold.Notify();
  first.join();
  for (auto& w : writers) w.join();
  EXPECT_EQ(rec.sizes(), std::vector<int>({1, 4}));
  EXPECT_EQ(batch_of, std::vector<int>({1, 1, 1, 1}));
}

TEST(GroupCommitTest, MaxBatchBoundsEveryCommit) {
  Recorder rec;
  absl::Notification hold;
  rec.hold_first_ = &hold;
  Recorder::Committer committer(NoWait(/*max_batch=*/2), [&](auto ops) { return rec.Commit(ops); });
  std::thread first([&] { (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); }); });
  ASSERT_TRUE(rec.AwaitFirstCommit());
  std::vector<std::thread> writers;
  for (int i = 0; i < 5; ++i) {
    writers.emplace_back([&] { (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); }); });
  }
  ASSERT_TRUE(committer.AwaitQueued(5, absl::Seconds(10)));
  hold.Notify();
  first.join();
  for (auto& w : writers) w.join();
  EXPECT_EQ(rec.sizes(), std::vector<int>({1, 2, 2, 1}));
}

TEST(GroupCommitTest, AFailingWriteFailsOnlyItsCaller) {
  Recorder rec;
  absl::Notification hold;
  rec.hold_first_ = &hold;
  Recorder::Committer committer(NoWait(), [&](auto ops) { return rec.Commit(ops); });
  std::thread first([&] { (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); }); });
  ASSERT_TRUE(rec.AwaitFirstCommit());
  absl::Status good, bad;
  std::thread a([&] { good = committer.Write([](FakeTxn&) { return absl::OkStatus(); }); });
  std::thread b([&] {
    bad = committer.Write([](FakeTxn&) { return absl::FailedPreconditionError("refused"); });
  });
  ASSERT_TRUE(committer.AwaitQueued(2, absl::Seconds(10)));
  hold.Notify();
  first.join();
  a.join();
  b.join();
  EXPECT_EQ(rec.sizes(), std::vector<int>({1, 2}));
  EXPECT_TRUE(good.ok()) << good;
  EXPECT_EQ(bad.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(GroupCommitTest, AFailedCommitFailsEveryWriteOfItsBatch) {
  Recorder rec;
  rec.fail_commit_ = true;
  Recorder::Committer committer(NoWait(), [&](auto ops) { return rec.Commit(ops); });
  const absl::Status s = committer.Write([](FakeTxn&) { return absl::OkStatus(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "disk full");
}

TEST(GroupCommitTest, AfterStopWritesAreRefused) {
  Recorder rec;
  Recorder::Committer committer(NoWait(), [&](auto ops) { return rec.Commit(ops); });
  committer.Stop();
  bool ran = false;
  const absl::Status s = committer.Write([&](FakeTxn&) {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(rec.sizes().empty());
}

// With a wait, the next leader waits for as many writes as the last commit released plus those
// that queued during it: here batch 1 released its caller, which writes again, and two writes
// queued meanwhile, so batch 2 holds all three (without the wait it would commit the two
// queued ones at once and leave the third to a batch of its own).
TEST(GroupCommitTest, TheLeaderWaitsForTheWritersTheLastCommitReleased) {
  Recorder rec;
  absl::Notification hold;
  rec.hold_first_ = &hold;
  Recorder::Committer committer({.max_batch = 256, .wait = absl::Seconds(30)},
                                [&](auto ops) { return rec.Commit(ops); });
  absl::Notification released, again;
  std::thread first([&] {
    (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); });
    released.Notify();
    // Writes again only once the test says so: by then, without the wait, batch 2's leader
    // would long have committed the two queued writes.
    again.WaitForNotification();
    (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); });
  });
  ASSERT_TRUE(rec.AwaitFirstCommit());
  std::thread a([&] { (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); }); });
  std::thread b([&] { (void)committer.Write([](FakeTxn&) { return absl::OkStatus(); }); });
  ASSERT_TRUE(committer.AwaitQueued(2, absl::Seconds(10)));
  hold.Notify();
  released.WaitForNotification();
  again.Notify();
  first.join();
  a.join();
  b.join();
  EXPECT_EQ(rec.sizes(), std::vector<int>({1, 3}));
}

}  // namespace
}  // namespace loom
