// File: coordinator/pipeline/metrics.h
// The coordinator's Prometheus metrics, rendered in the text exposition format at /metrics:
//   loom_requests_total{plan_kind,outcome}        counter
//   loom_request_duration_seconds{plan_kind}      histogram
//   loom_coordinator_overhead_seconds             histogram (the coordinator's own time)
//   loom_subtask_attempts_total{outcome}          counter: ok, failed (retried elsewhere or
//                                                 failing the request), cancelled (client gone)
//   loom_usage_overclaims_total                   counter: usage claiming more tokens than sent
//   loom_settlements_total, loom_credits_charged_micro_total   counters
//   loom_http_responses_total{endpoint,status}    counter: every HTTP answer, refusals too
//                                                 (400, 401, 402, 413, 429, ...), by route
//   loom_requests_by_model_total{model}           counter: the model a request named
//                                                 (loom-auto or a pin), at most 256 names
//   loom_devices{state}                           gauge, from the registry at scrape time
//   loom_device_usage_overclaims{device}          gauge, from the registry at scrape time
//   loom_requests_running, loom_requests_waiting  gauges, from Admission at scrape time
//   loom_affinity, loom_affinity_prior, loom_affinity_outcomes{model,category[,outcome]}
//                                                 gauges, from the selector at scrape time
// A new metric is one family below (common/metrics_registry.h) and one call where it happens.
// Thread-safe.
#ifndef LOOM_COORDINATOR_PIPELINE_METRICS_H_
#define LOOM_COORDINATOR_PIPELINE_METRICS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/metrics_registry.h"
#include "loom/v1/common.pb.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

class Metrics {
 public:
  Metrics();

  void RecordRequest(v1::PlanKind kind, const absl::Status& outcome, absl::Duration latency);
  void RecordOverhead(absl::Duration overhead);
  void RecordAttempt(v1::AttemptOutcome outcome);
  // A worker reported more output tokens than the coordinator received.
  void RecordOverclaim() { overclaims_->Add(); }
  void RecordSettlement(int64_t charged_micro);
  // `endpoint` is a route ("/v1/chat/completions"), never a raw path: labels stay bounded.
  void RecordHttpResponse(const std::string& endpoint, int status);
  void RecordModel(const std::string& model) { models_->Add({model}); }

  // `running` and `waiting`: the requests admitted and waiting now (Admission); `affinities`
  // (may be null): the selector's, as gauges per model and category.
  std::string Render(const std::vector<v1::DeviceInfo>& devices, int running = 0,
                     int waiting = 0, const v1::ListAffinitiesResponse* affinities = nullptr) const;

 private:
  MetricsRegistry registry_;
  // Constant after construction: the registry's families.
  MetricsRegistry::Counter* const requests_;
  MetricsRegistry::Histogram* const durations_;
  MetricsRegistry::Histogram* const overhead_;
  MetricsRegistry::Counter* const attempts_;
  MetricsRegistry::Counter* const overclaims_;
  MetricsRegistry::Counter* const settlements_;
  MetricsRegistry::Counter* const credits_;
  MetricsRegistry::Counter* const http_;
  MetricsRegistry::Counter* const models_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_METRICS_H_
