// File: ledger/group_commit.h
// Group commit without a writer thread, for any engine whose writes run inside a transaction
// object `Txn`. A caller whose write nobody is committing commits every queued write in one
// batch (the engine's CommitFn: one transaction, one disk flush); callers that arrive
// meanwhile queue, and the leader hands the lead to the first of them, which commits them all
// next. A lone caller commits at once, on its own thread, and never waits for another.
//
//   GroupCommitter<SqliteTxn> committer({.max_batch = 256}, [&](auto batch) {
//     ... BEGIN; for (auto* op : batch) op->status = op->fn(txn); COMMIT ...
//   });
//   absl::Status s = committer.Write([&](SqliteTxn& txn) { return Settle(txn, request); });
//
// Batching: callers released by the last commit are likely to write again, so while fewer
// writes are queued than those callers plus the writes that queued during that commit, the
// leader waits up to Options::wait for them (busy callers then share flushes instead of
// alternating between two half-full ones).
//
// Thread-safe. Write blocks until its write is committed or refused; the function it is given
// runs on whichever caller leads that batch. Stop() (or the destructor) refuses new writes
// with UNAVAILABLE and waits for the queued ones.
#ifndef LOOM_LEDGER_GROUP_COMMIT_H_
#define LOOM_LEDGER_GROUP_COMMIT_H_

#include <algorithm>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace loom {

template <typename Txn>
class GroupCommitter {
 public:
  using WriteFn = absl::FunctionRef<absl::Status(Txn&)>;
  struct Op {
    WriteFn fn;
    bool durable = true;  // false: may share a commit that is not flushed to disk
    absl::Status status;  // the write's outcome, set by CommitFn
  };
  // Commits `batch` in one transaction: runs each op's fn, sets its status, and returns the
  // commit's status (not OK: nothing of the batch was written, whatever the ops' statuses).
  using CommitFn = std::function<absl::Status(absl::Span<Op* const> batch)>;

  struct Options {
    int max_batch = 256;                          // writes per commit (>= 1)
    absl::Duration wait = absl::Microseconds(200);  // the leader's wait for expected writes
  };

  GroupCommitter(Options options, CommitFn commit)
      : options_(options), commit_(std::move(commit)) {}
  ~GroupCommitter() { Stop(); }
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  absl::Status Write(WriteFn fn, bool durable = true) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until at least `n` writes are queued behind a running commit, or `timeout` passes;
  // true when they are (tests and benchmarks arrange batches with it).
  bool AwaitQueued(size_t n, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto queued = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&queued), timeout);
  }

  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    mu_.Await(absl::Condition(this, &GroupCommitter::Idle));
  }

 private:
  struct Queued {
    explicit Queued(Op o) : op(o) {}
    Op op;
    bool done = false;  // set by the leader that committed it, before `woken`
    // Notified once: when committed (done), or when this write's caller is to lead (not done).
    absl::Notification woken;
  };

  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !leading_; }
  // Takes the next batch off the queue (the leader's own write is its front), after waiting
  // briefly for the writes the last commit makes likely.
  std::vector<Queued*> TakeBatch() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const Options options_;
  const CommitFn commit_;

  absl::Mutex mu_;
  std::deque<Queued*> queue_ ABSL_GUARDED_BY(mu_);  // writes not yet taken by a leader
  bool leading_ ABSL_GUARDED_BY(mu_) = false;        // a caller leads (or is about to)
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t released_ ABSL_GUARDED_BY(mu_) = 0;  // callers the last commit released
  size_t backlog_ ABSL_GUARDED_BY(mu_) = 0;   // writes queued while the last commit ran
};

template <typename Txn>
absl::Status GroupCommitter<Txn>::Write(WriteFn fn, bool durable) {
  Queued self(Op{fn, durable, absl::OkStatus()});
  bool leads = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("ledger is closing");
    queue_.push_back(&self);
    if (!leading_) {  // then the queue was empty: this write is its front
      leading_ = true;
      leads = true;
    }
  }
  // Woken once: either its write was committed by a leader (done), or it leads next. Each
  // caller waits on its own notification, so a leader wakes its batch's callers at once rather
  // than one after another through a shared mutex.
  if (!leads) {
    self.woken.WaitForNotification();
    if (self.done) return self.op.status;
  }
  const std::vector<Queued*> batch = TakeBatch();
  std::vector<Op*> ops;
  ops.reserve(batch.size());
  for (Queued* q : batch) ops.push_back(&q->op);
  const absl::Status commit = commit_(ops);
  Queued* next = nullptr;
  {
    absl::MutexLock lock(&mu_);
    released_ = batch.size();
    backlog_ = queue_.size();  // writes that queued while this batch ran
    if (queue_.empty()) {
      leading_ = false;
    } else {
      next = queue_.front();  // woken below with done unset: it leads
    }
  }
  // Each write's fields are set before its notification, which orders them for its caller.
  if (next != nullptr) next->woken.Notify();
  for (Queued* q : batch) {
    if (!commit.ok()) q->op.status = commit;  // nothing of the batch was written
    q->done = true;
    if (q != &self) q->woken.Notify();
  }
  return self.op.status;
}

template <typename Txn>
std::vector<typename GroupCommitter<Txn>::Queued*> GroupCommitter<Txn>::TakeBatch() {
  absl::MutexLock lock(&mu_);
  const size_t most = static_cast<size_t>(std::max(1, options_.max_batch));
  const size_t expected = std::min(backlog_ + released_, most);
  if (queue_.size() < expected && options_.wait > absl::ZeroDuration()) {
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.size() >= expected; };
    mu_.AwaitWithTimeout(absl::Condition(&arrived), options_.wait);
  }
  std::vector<Queued*> batch;
  while (!queue_.empty() && batch.size() < most) {
    batch.push_back(queue_.front());
    queue_.pop_front();
  }
  return batch;
}

}  // namespace loom

#endif  // LOOM_LEDGER_GROUP_COMMIT_H_
