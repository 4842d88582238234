#include "coordinator/front/admission.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

namespace loom {

absl::StatusOr<Admission::Ticket> Admission::Acquire(const std::string& client,
                                                     absl::Time deadline,
                                                     const Cancellation* cancel) {
  Waiter w;
  // Registered before the lock is taken: a cancellation that already happened runs the
  // callback inline, and a running callback takes the lock.
  const int on_cancel = cancel ? cancel->OnCancel([this, &w] {
    absl::MutexLock lock(&mu_);
    w.gave_up = true;
  })
                               : -1;
  // Removed after the lock is released (RemoveCallback waits for a running callback).
  absl::Cleanup forget = [&] {
    if (cancel) cancel->RemoveCallback(on_cancel);
  };
  absl::MutexLock lock(&mu_);
  Client& c = clients_[client];
  if (options_.max_running_per_client > 0 && c.running >= options_.max_running_per_client) {
    EraseIfIdleLocked(client);
    return absl::ResourceExhaustedError(absl::StrCat(
        client, " already has ", options_.max_running_per_client,
        " requests running (the limit per client); retry when one finishes"));
  }
  if (running_ < options_.slots) {
    // Free slots with requests waiting means those requests' clients are at their limit.
    ++running_;
    ++c.running;
    c.last_served = ++serve_seq_;
    return Ticket(this, client);
  }
  const int clients_waiting =
      static_cast<int>(waiting_clients_.size()) + (c.waiting.empty() ? 1 : 0);
  const int share = std::max(1, options_.max_waiting / clients_waiting);
  if (static_cast<int>(c.waiting.size()) >= share || waiting_ >= 2 * options_.max_waiting) {
    EraseIfIdleLocked(client);
    return absl::ResourceExhaustedError(absl::StrCat(
        "the coordinator is busy: ", running_, " requests are running and ", waiting_,
        " are waiting; ", client, " already has its share of the waiting room (", share,
        "); retry later"));
  }
  if (w.gave_up) {
    EraseIfIdleLocked(client);
    return absl::CancelledError("the client went away before its request started");
  }
  waiting_clients_.insert(client);
  c.waiting.push_back(&w);
  ++waiting_;
  mu_.AwaitWithDeadline(
      absl::Condition(+[](Waiter* w) { return w->granted || w->gave_up; }, &w), deadline);
  if (w.granted) return Ticket(this, client);  // GrantLocked counted it as running
  c.waiting.erase(std::find(c.waiting.begin(), c.waiting.end(), &w));
  --waiting_;
  if (c.waiting.empty()) waiting_clients_.erase(client);
  EraseIfIdleLocked(client);
  if (w.gave_up) return absl::CancelledError("the client went away while its request waited");
  return absl::DeadlineExceededError(
      "the deadline passed while the request waited for a free slot (--request_threads are "
      "all busy)");
}

void Admission::Release(const std::string& client) {
  absl::MutexLock lock(&mu_);
  --running_;
  --clients_[client].running;
  GrantLocked();
  EraseIfIdleLocked(client);
}

void Admission::GrantLocked() {
  // One slot at a time to the waiting client served longest ago that is under its own limit
  // (a scan of the clients waiting: few, and only when a slot frees with requests waiting).
  while (running_ < options_.slots) {
    const std::string* next = nullptr;
    Client* best = nullptr;
    for (const std::string& name : waiting_clients_) {
      Client& c = clients_[name];
      if (options_.max_running_per_client > 0 && c.running >= options_.max_running_per_client) {
        continue;
      }
      if (best == nullptr || c.last_served < best->last_served) {
        best = &c;
        next = &name;
      }
    }
    if (best == nullptr) return;
    Waiter* w = best->waiting.front();
    best->waiting.pop_front();
    --waiting_;
    w->granted = true;
    ++running_;
    ++best->running;
    best->last_served = ++serve_seq_;
    if (best->waiting.empty()) waiting_clients_.erase(*next);
  }
}

void Admission::EraseIfIdleLocked(const std::string& client) {
  auto it = clients_.find(client);
  if (it != clients_.end() && it->second.running == 0 && it->second.waiting.empty()) {
    clients_.erase(it);
  }
}

int Admission::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

int Admission::waiting() const {
  absl::MutexLock lock(&mu_);
  return waiting_;
}

}  // namespace loom
