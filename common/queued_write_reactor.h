// File: common/queued_write_reactor.h
// A server-streaming reactor fed by a producer thread: the producer Push()es messages from any
// thread and Close()s with a status; the reactor writes them one at a time (gRPC allows one
// outstanding write) and finishes once the queue is drained. When the client goes away (write
// fails or the call is cancelled) `cancellation()` fires and Push returns false, so the
// producer stops. The object deletes itself when both gRPC (OnDone) and the producer (Close)
// are finished with it.
//
// Fewer, larger writes when the producer is faster than the network: a message pushed while
// another waits behind the one being written is offered to Merge(), which may fold it into the
// waiting one (default: never); so is CloseWith's last message. The last message goes out with
// the status in one operation (StartWriteAndFinish) when it is still queued at Close, or is
// given to CloseWith.
//
//   class MyReactor : public QueuedWriteReactor<v1::Event> { ... };
//   pool.Schedule([r] { while (...) if (!r->Push(e)) break; r->Close(grpc::Status::OK); });
//
// Thread-safe. Never blocks a reactor thread.
#ifndef LOOM_COMMON_QUEUED_WRITE_REACTOR_H_
#define LOOM_COMMON_QUEUED_WRITE_REACTOR_H_

#include <deque>
#include <utility>

#include <grpcpp/support/server_callback.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/cancellation.h"

namespace loom {

template <typename T>
class QueuedWriteReactor : public grpc::ServerWriteReactor<T> {
 public:
  // Queues `message`; false when the client is gone (stop producing).
  bool Push(T message) {
    const T* to_write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (broken_ || closed_) return false;
      // pending_.front() is being written and must not change; a later one may take `message`.
      if (pending_.size() >= 2 && Merge(pending_.back(), message)) return true;
      pending_.push_back(std::move(message));
      if (!writing_) {
        writing_ = true;
        to_write = &pending_.front();
      }
    }
    if (to_write) this->StartWrite(to_write);
    return true;
  }

  // The producer is done: finish with `status` once every queued message is written. Call once;
  // the reactor may be deleted before Close returns.
  void Close(grpc::Status status) {
    bool finish = false;
    grpc::Status to_send;
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
      status_ = std::move(status);
      if (!writing_) finish = MaybeFinishLocked(&to_send);
    }
    if (finish) this->Finish(to_send);
    Unref();
  }

  // Push(last) then Close(status), with `last` and the status sent together when nothing else
  // is being written. Returns false (and still closes) when the client is gone.
  bool CloseWith(T last, grpc::Status status) {
    const T* write_last = nullptr;
    bool finish = false;
    bool pushed = false;
    grpc::Status to_send;
    {
      absl::MutexLock lock(&mu_);
      if (!broken_ && !closed_) {
        // As in Push: a message waiting behind the one being written may take `last`, which
        // then goes out with it and the status once that write is done.
        if (pending_.size() < 2 || !Merge(pending_.back(), last)) {
          pending_.push_back(std::move(last));
        }
        pushed = true;
      }
      closed_ = true;
      status_ = std::move(status);
      if (!writing_ && pushed) {  // nothing queued before `last`
        writing_ = true;
        finished_ = true;
        write_last = &pending_.back();
        to_send = status_;
      } else if (!writing_) {
        finish = MaybeFinishLocked(&to_send);
      }
    }
    if (write_last) this->StartWriteAndFinish(write_last, grpc::WriteOptions(), to_send);
    if (finish) this->Finish(to_send);
    Unref();
    return pushed;
  }

  // Fires when the client cancels or goes away.
  Cancellation& cancellation() { return cancel_; }

  void OnWriteDone(bool ok) override {
    const T* next = nullptr;
    const T* write_last = nullptr;
    bool finish = false;
    grpc::Status to_send;
    {
      absl::MutexLock lock(&mu_);
      pending_.pop_front();
      if (!ok) {
        broken_ = true;  // the client is gone: nothing more can be written
        pending_.clear();
      }
      if (pending_.size() == 1 && closed_ && !finished_) {
        finished_ = true;  // the last message: write it with the status
        write_last = &pending_.front();
        to_send = status_;
      } else if (!pending_.empty()) {
        next = &pending_.front();
      } else {
        writing_ = false;
        finish = MaybeFinishLocked(&to_send);
      }
    }
    if (!ok) cancel_.Cancel();
    if (next) this->StartWrite(next);
    if (write_last) this->StartWriteAndFinish(write_last, grpc::WriteOptions(), to_send);
    if (finish) this->Finish(to_send);
  }

  void OnCancel() override { cancel_.Cancel(); }
  void OnDone() override { Unref(); }

 protected:
  ~QueuedWriteReactor() override = default;

  // Folds `next` into `queued` (a message not yet being written) and returns true, or returns
  // false to write them separately. Called with the reactor's lock held; must not block.
  virtual bool Merge(T& queued, const T& next) { return false; }

 private:
  bool MaybeFinishLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!closed_ || finished_ || !pending_.empty()) return false;
    finished_ = true;
    *status = status_;
    return true;
  }

  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  Cancellation cancel_;
  absl::Mutex mu_;
  std::deque<T> pending_ ABSL_GUARDED_BY(mu_);  // front is being written while writing_
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  int refs_ ABSL_GUARDED_BY(mu_) = 2;  // gRPC (OnDone) and the producer (Close)
};

}  // namespace loom

#endif  // LOOM_COMMON_QUEUED_WRITE_REACTOR_H_
