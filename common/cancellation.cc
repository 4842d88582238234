#include "common/cancellation.h"

#include <utility>

namespace loom {

void Cancellation::Cancel() {
  std::map<int, std::function<void()>> callbacks;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    running_ = true;
    callbacks.swap(callbacks_);
  }
  for (auto& [id, fn] : callbacks) fn();
  absl::MutexLock lock(&mu_);
  running_ = false;
}

bool Cancellation::IsCancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool Cancellation::WaitFor(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&cancelled_), timeout);
  return cancelled_;
}

bool Cancellation::WaitUntil(absl::Time deadline, const Clock& clock) const {
  absl::MutexLock lock(&mu_);
  return clock.AwaitWithDeadline(mu_, absl::Condition(&cancelled_), deadline);
}

int Cancellation::OnCancel(std::function<void()> fn) const {
  {
    absl::MutexLock lock(&mu_);
    if (!cancelled_) {
      int id = next_id_++;
      callbacks_.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();
  return -1;
}

void Cancellation::RemoveCallback(int id) const {
  absl::MutexLock lock(&mu_);
  callbacks_.erase(id);
  // A callback may be running on another thread right now; its captures must outlive it.
  mu_.Await(absl::Condition(
      +[](bool* running) { return !*running; }, &running_));
}

}  // namespace loom
