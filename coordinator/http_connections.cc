#include "coordinator/http_connections.h"

#include <utility>

namespace loom {

void ConnectionQueue::enqueue(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (active_ >= max_connections_) {
      waiting_.push_back(std::move(fn));
      return;
    }
    ++active_;
  }
  threads_.Run([this, fn = std::move(fn)]() mutable { Serve(std::move(fn)); });
}

void ConnectionQueue::Serve(std::function<void()> fn) {
  while (true) {
    fn();  // serves the connection until it closes
    absl::MutexLock lock(&mu_);
    if (waiting_.empty()) {
      --active_;
      return;
    }
    fn = std::move(waiting_.front());  // this thread takes the longest-waiting connection
    waiting_.pop_front();
  }
}

void ConnectionQueue::shutdown() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](ConnectionQueue* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
        return self->active_ == 0 && self->waiting_.empty();
      },
      this));
}

int ConnectionQueue::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

int ConnectionQueue::waiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiting_.size());
}

}  // namespace loom
