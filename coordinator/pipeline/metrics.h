// File: coordinator/pipeline/metrics.h
// The coordinator's Prometheus metrics, rendered in the text exposition format at /metrics:
//   loom_requests_total{plan_kind,outcome}        counter
//   loom_request_duration_seconds{plan_kind}      histogram
//   loom_coordinator_overhead_seconds             histogram (the coordinator's own time)
//   loom_subtask_attempts_total{outcome}          counter: ok, failed (retried elsewhere or
//                                                 failing the request), cancelled (client gone)
//   loom_settlements_total, loom_credits_charged_micro_total   counters
//   loom_http_responses_total{endpoint,status}    counter: every HTTP answer, refusals too
//                                                 (400, 401, 402, 413, 429, ...), by route
//   loom_requests_by_model_total{model}           counter: the model a request named
//                                                 (loom-auto or a pin), at most 256 names
//   loom_devices{state}                           gauge, from the registry at scrape time
//   loom_requests_running, loom_requests_waiting  gauges, from Admission at scrape time
// Thread-safe.
#ifndef LOOM_COORDINATOR_PIPELINE_METRICS_H_
#define LOOM_COORDINATOR_PIPELINE_METRICS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "loom/v1/common.pb.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

class Metrics {
 public:
  void RecordRequest(v1::PlanKind kind, const absl::Status& outcome, absl::Duration latency);
  void RecordOverhead(absl::Duration overhead);
  void RecordAttempt(v1::AttemptOutcome outcome);
  // A worker reported more output tokens than the coordinator received.
  void RecordOverclaim();
  void RecordSettlement(int64_t charged_micro);
  // `endpoint` is a route ("/v1/chat/completions"), never a raw path: labels stay bounded.
  void RecordHttpResponse(const std::string& endpoint, int status);
  void RecordModel(const std::string& model);

  // `running` and `waiting`: the requests admitted and waiting now (Admission); `affinities`
  // (may be null): the selector's, as gauges per model and category.
  std::string Render(const std::vector<v1::DeviceInfo>& devices, int running = 0,
                     int waiting = 0, const v1::ListAffinitiesResponse* affinities = nullptr) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<int64_t> counts;  // per bound, not cumulative
    int64_t count = 0;
    double sum = 0;
    void Observe(double v);
  };
  static Histogram LatencyHistogram();

  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, int64_t> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Histogram> durations_ ABSL_GUARDED_BY(mu_);
  Histogram overhead_ ABSL_GUARDED_BY(mu_) = {
      {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3}, {}, 0, 0};
  int64_t attempts_ok_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t attempts_failed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t attempts_cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t settlements_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t credits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t overclaims_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<std::string, int>, int64_t> http_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_METRICS_H_
