// File: coordinator/pipeline/attempt_log.cc
// AttemptLog (declared in attempt_runner.h): what one request's calls did, shared by the
// attempt runner's threads: every attempt, the work delivered (paid even when the request is
// abandoned), the time some call was on a device, excluded devices and policy notes.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/pipeline/attempt_runner.h"

namespace loom {

void AttemptLog::Add(v1::Attempt attempt) {
  if (observer_) observer_(attempt);
  absl::MutexLock lock(&mu_);
  attempts_.push_back(std::move(attempt));
}

std::vector<v1::Attempt> AttemptLog::attempts() const {
  absl::MutexLock lock(&mu_);
  return attempts_;
}

void AttemptLog::CallStarted() {
  absl::MutexLock lock(&mu_);
  if (in_flight_++ == 0) busy_since_ = clock_->Now();
}

void AttemptLog::CallFinished() {
  absl::MutexLock lock(&mu_);
  if (--in_flight_ == 0) busy_ += clock_->Now() - busy_since_;
}

void AttemptLog::AddDelivered(Delivered delivered) {
  absl::MutexLock lock(&mu_);
  delivered_.push_back(std::move(delivered));
}

std::vector<AttemptLog::Delivered> AttemptLog::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

void AttemptLog::ForEachDelivered(absl::FunctionRef<void(const Delivered&)> visit) const {
  absl::MutexLock lock(&mu_);
  for (const Delivered& d : delivered_) visit(d);
}

absl::Duration AttemptLog::device_wait() const {
  absl::MutexLock lock(&mu_);
  return in_flight_ > 0 ? busy_ + (clock_->Now() - busy_since_) : busy_;
}

void AttemptLog::ExcludeDevices(std::set<std::string> devices) {
  absl::MutexLock lock(&mu_);
  excluded_ = std::move(devices);
}

void AttemptLog::NotePolicy(const std::string& sub_task_id, std::string note) {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, text] : policy_notes_) {
    if (id == sub_task_id) return;
  }
  policy_notes_.emplace_back(sub_task_id, std::move(note));
}

std::vector<std::string> AttemptLog::policy_notes() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, text] : policy_notes_) out.push_back(absl::StrCat(id, ": ", text));
  return out;
}

std::set<std::string> AttemptLog::excluded_devices() const {
  absl::MutexLock lock(&mu_);
  return excluded_;
}

}  // namespace loom
