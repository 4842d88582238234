// File: worker/upstream_monitor.cc
#include "worker/upstream_monitor.h"

#include <algorithm>
#include <utility>

#include "common/utf8.h"
#include "spdlog/spdlog.h"

namespace loom {

namespace {
// A load report carries the problem to the coordinator, which shows it to operators.
constexpr size_t kMaxProblemBytes = 300;
}  // namespace

UpstreamMonitor::UpstreamMonitor(UpstreamMonitorOptions options,
                                 std::function<absl::Status()> check)
    : options_(std::move(options)), check_(std::move(check)) {}

UpstreamMonitor::~UpstreamMonitor() { Stop(); }

std::string UpstreamMonitor::CheckNow() {
  const absl::Status status = check_();
  std::string problem;
  if (!status.ok()) {
    problem = std::string(status.message());
    if (problem.empty()) problem = status.ToString();
    problem = ToValidUtf8(problem.substr(0, CompleteUtf8Length(problem.substr(0, kMaxProblemBytes))));
  }
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    ++checks_;
    if (problem != problem_) {
      if (problem.empty()) {
        spdlog::info("upstream serves again: back in rotation");
      } else {
        spdlog::warn("upstream cannot serve, device held out of rotation: {}", problem);
      }
      problem_ = problem;
      changed = true;
    }
  }
  if (changed && options_.on_change) options_.on_change(problem);
  return problem;
}

void UpstreamMonitor::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void UpstreamMonitor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void UpstreamMonitor::Nudge() {
  absl::MutexLock lock(&mu_);
  nudged_ = true;
}

std::string UpstreamMonitor::Problem() const {
  absl::MutexLock lock(&mu_);
  return problem_;
}

int UpstreamMonitor::checks() const {
  absl::MutexLock lock(&mu_);
  return checks_;
}

void UpstreamMonitor::Loop() {
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      wait = problem_.empty() ? options_.interval : backoff;
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](UpstreamMonitor* m) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return m->stopping_ || m->nudged_;
              },
              this),
          wait);
      if (stopping_) return;
      nudged_ = false;
    }
    const bool failing = !CheckNow().empty();
    backoff = failing ? std::min(backoff * 2, std::max(options_.interval, options_.initial_backoff))
                      : options_.initial_backoff;
  }
}

}  // namespace loom
