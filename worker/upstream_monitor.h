// File: worker/upstream_monitor.h
// Keeps a device out of rotation while its model server cannot serve: checks the upstream at
// start and keeps checking, and says what is wrong in every load report (DeviceLoad's
// upstream_problem), which makes the coordinator hold the device as suspect (no new work)
// until the problem clears. No healthy registration in front of a dead upstream.
//
//   UpstreamMonitor monitor({.interval = absl::Seconds(15)}, [&] { return service.CheckUpstreams(); });
//   monitor.CheckNow();   // once before registering, so the first advertisement is true
//   monitor.Start();      // then in the background; Nudge() after a failed generation
//   load.set_upstream_problem(monitor.Problem());
//
// Timing: a healthy upstream is checked every `interval`; a failing one again after
// `initial_backoff`, doubling up to `interval`. Nudge() checks at once (a generation just
// failed as if the server were gone).
//
// Thread-safe. Owns one thread between Start() and Stop() (or destruction).
#ifndef LOOM_WORKER_UPSTREAM_MONITOR_H_
#define LOOM_WORKER_UPSTREAM_MONITOR_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace loom {

struct UpstreamMonitorOptions {
  absl::Duration interval = absl::Seconds(15);
  absl::Duration initial_backoff = absl::Milliseconds(500);
  // Called (on the checking thread, no lock held) when the problem changes; "" when the
  // upstream serves again.
  std::function<void(const std::string& problem)> on_change;
};

class UpstreamMonitor {
 public:
  // `check` answers whether the upstream can serve now (OK) or what is wrong; it bounds its
  // own time.
  UpstreamMonitor(UpstreamMonitorOptions options, std::function<absl::Status()> check);
  ~UpstreamMonitor();

  // Runs the check on the calling thread and records its outcome (logged when it changes).
  // Returns the problem ("" when the upstream serves).
  std::string CheckNow() ABSL_LOCKS_EXCLUDED(mu_);
  void Start();
  void Stop();
  void Nudge() ABSL_LOCKS_EXCLUDED(mu_);

  // What is wrong with the upstream now, "" when nothing is.
  std::string Problem() const ABSL_LOCKS_EXCLUDED(mu_);
  int checks() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();

  const UpstreamMonitorOptions options_;
  const std::function<absl::Status()> check_;

  mutable absl::Mutex mu_;
  std::string problem_ ABSL_GUARDED_BY(mu_);
  int checks_ ABSL_GUARDED_BY(mu_) = 0;
  bool nudged_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace loom

#endif  // LOOM_WORKER_UPSTREAM_MONITOR_H_
