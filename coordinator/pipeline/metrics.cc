#include "coordinator/pipeline/metrics.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/categories.h"

namespace loom {
namespace {

std::string KindLabel(v1::PlanKind kind) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::PlanKind_Name(kind), "PLAN_KIND_"));
}

const std::vector<double> kLatencyBounds = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5,
                                            1,     2.5,   5,    10,   30,  60};
const std::vector<double> kOverheadBounds = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3,
                                             2.5e-3, 5e-3,  10e-3,  50e-3};

}  // namespace

Metrics::Metrics()
    : requests_(registry_.AddCounter("loom_requests_total", "Requests by plan kind and outcome.",
                                     {"plan_kind", "outcome"})),
      durations_(registry_.AddHistogram("loom_request_duration_seconds",
                                        "Request latency by plan kind.", kLatencyBounds,
                                        {"plan_kind"})),
      overhead_(registry_.AddHistogram("loom_coordinator_overhead_seconds",
                                       "The coordinator's own time per request.",
                                       kOverheadBounds)),
      attempts_(registry_.AddCounter("loom_subtask_attempts_total",
                                     "Model-call attempts by outcome (failed ones were retried "
                                     "elsewhere or failed the request).",
                                     {"outcome"})),
      overclaims_(registry_.AddCounter("loom_usage_overclaims_total",
                                       "Usage reports claiming more output tokens than were "
                                       "received (only received tokens are paid).")),
      settlements_(registry_.AddCounter("loom_settlements_total", "Requests settled in the ledger.")),
      credits_(registry_.AddCounter("loom_credits_charged_micro_total",
                                    "Micro-credits charged to clients.")),
      http_(registry_.AddCounter("loom_http_responses_total",
                                 "HTTP responses by route and status (refusals included).",
                                 {"endpoint", "status"})),
      // Names come from clients: the label set stays bounded.
      models_(registry_.AddCounter("loom_requests_by_model_total",
                                   "Requests by the model they named (loom-auto or a pin).",
                                   {"model"}, /*max_series=*/256)) {
  for (const char* outcome : {"ok", "failed", "cancelled"}) attempts_->Touch({outcome});
}

void Metrics::RecordRequest(v1::PlanKind kind, const absl::Status& outcome,
                            absl::Duration latency) {
  const std::string k = KindLabel(kind);
  requests_->Add({k, outcome.ok() ? "ok" : absl::AsciiStrToLower(absl::StatusCodeToString(outcome.code()))});
  durations_->Observe({k}, absl::ToDoubleSeconds(latency));
}

void Metrics::RecordOverhead(absl::Duration overhead) {
  overhead_->Observe(absl::ToDoubleSeconds(overhead));
}

void Metrics::RecordAttempt(v1::AttemptOutcome outcome) {
  attempts_->Add({outcome == v1::ATTEMPT_OUTCOME_OK          ? "ok"
                  : outcome == v1::ATTEMPT_OUTCOME_CANCELLED ? "cancelled"
                                                             : "failed"});
}

void Metrics::RecordSettlement(int64_t charged_micro) {
  settlements_->Add();
  credits_->Add(charged_micro);
}

void Metrics::RecordHttpResponse(const std::string& endpoint, int status) {
  http_->Add({endpoint, absl::StrCat(status)});
}

std::string Metrics::Render(const std::vector<v1::DeviceInfo>& devices, int running,
                            int waiting, const v1::ListAffinitiesResponse* affinities) const {
  std::string out = registry_.Render();
  GaugeWriter g(&out);
  std::map<std::string, int> states = {{"healthy", 0}, {"suspect", 0}, {"draining", 0}};
  for (const auto& d : devices) {
    states[absl::AsciiStrToLower(absl::StripPrefix(v1::DeviceState_Name(d.state()), "DEVICE_STATE_"))]++;
  }
  g.Family("loom_devices", "Devices in the registry by state.");
  for (const auto& [state, n] : states) g.Sample("loom_devices", {{"state", state}}, n);
  g.Family("loom_requests_running", "Requests running now (both doors).");
  g.Sample("loom_requests_running", {}, running);
  g.Family("loom_requests_waiting", "Requests waiting for a slot now.");
  g.Sample("loom_requests_waiting", {}, waiting);
  g.Family("loom_device_usage_overclaims", "Overclaiming usage reports per registered device.");
  for (const auto& d : devices) {
    if (d.usage_overclaims() == 0) continue;
    g.Sample("loom_device_usage_overclaims", {{"device", d.device_id()}}, d.usage_overclaims());
  }
  if (affinities == nullptr) return out;
  g.Family("loom_affinity",
           "The affinity the selector scores a model with for a category (prior blended with "
           "observed outcomes).");
  for (const v1::Affinity& a : affinities->affinities()) {
    g.Sample("loom_affinity", {{"model", a.model()}, {"category", CategoryName(a.category())}},
             a.blended());
  }
  g.Family("loom_affinity_prior", "The configured affinity of a model for a category.");
  for (const v1::Affinity& a : affinities->affinities()) {
    g.Sample("loom_affinity_prior", {{"model", a.model()}, {"category", CategoryName(a.category())}},
             a.prior());
  }
  g.Family("loom_affinity_outcomes", "Observed outcomes (weighted) of a model on a category.");
  for (const v1::Affinity& a : affinities->affinities()) {
    if (a.good() == 0 && a.bad() == 0) continue;
    for (const auto& [outcome, value] : {std::pair<const char*, double>{"good", a.good()}, {"bad", a.bad()}}) {
      g.Sample("loom_affinity_outcomes",
               {{"model", a.model()}, {"category", CategoryName(a.category())}, {"outcome", outcome}},
               value);
    }
  }
  return out;
}

}  // namespace loom
