#include "coordinator/pipeline/metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/categories.h"

namespace loom {
namespace {

std::string KindLabel(v1::PlanKind kind) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::PlanKind_Name(kind), "PLAN_KIND_"));
}

}  // namespace

void Metrics::Histogram::Observe(double v) {
  if (counts.size() != bounds.size()) counts.assign(bounds.size(), 0);
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (v <= bounds[i]) {
      ++counts[i];
      break;
    }
  }
  ++count;
  sum += v;
}

Metrics::Histogram Metrics::LatencyHistogram() {
  return {{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}, {}, 0, 0};
}

namespace {

// A Prometheus label value: backslash, quote and newline escaped.
std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void Metrics::RecordRequest(v1::PlanKind kind, const absl::Status& outcome,
                            absl::Duration latency) {
  const std::string k = KindLabel(kind);
  const std::string o = outcome.ok() ? "ok" : absl::AsciiStrToLower(absl::StatusCodeToString(outcome.code()));
  absl::MutexLock lock(&mu_);
  ++requests_[{k, o}];
  auto it = durations_.find(k);
  if (it == durations_.end()) it = durations_.emplace(k, LatencyHistogram()).first;
  it->second.Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::RecordHttpResponse(const std::string& endpoint, int status) {
  absl::MutexLock lock(&mu_);
  ++http_[{endpoint, status}];
}

void Metrics::RecordModel(const std::string& model) {
  constexpr size_t kMaxModels = 256;  // names come from clients: the label set stays bounded
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it == models_.end() && models_.size() >= kMaxModels) it = models_.emplace("(other)", 0).first;
  if (it == models_.end()) it = models_.emplace(model, 0).first;
  ++it->second;
}

void Metrics::RecordOverhead(absl::Duration overhead) {
  absl::MutexLock lock(&mu_);
  overhead_.Observe(absl::ToDoubleSeconds(overhead));
}

void Metrics::RecordAttempt(v1::AttemptOutcome outcome) {
  absl::MutexLock lock(&mu_);
  if (outcome == v1::ATTEMPT_OUTCOME_OK) {
    ++attempts_ok_;
  } else if (outcome == v1::ATTEMPT_OUTCOME_CANCELLED) {
    ++attempts_cancelled_;
  } else {
    ++attempts_failed_;
  }
}

void Metrics::RecordOverclaim() {
  absl::MutexLock lock(&mu_);
  ++overclaims_;
}

void Metrics::RecordSettlement(int64_t charged_micro) {
  absl::MutexLock lock(&mu_);
  ++settlements_;
  credits_ += charged_micro;
}

std::string Metrics::Render(const std::vector<v1::DeviceInfo>& devices, int running,
                            int waiting, const v1::ListAffinitiesResponse* affinities) const {
  std::string out;
  auto histogram = [&](const std::string& name, const std::string& labels, const Histogram& h) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += i < h.counts.size() ? h.counts[i] : 0;
      absl::StrAppendFormat(&out, "%s_bucket{%sle=\"%g\"} %d\n", name, labels, h.bounds[i], cumulative);
    }
    absl::StrAppendFormat(&out, "%s_bucket{%sle=\"+Inf\"} %d\n", name, labels, h.count);
    absl::StrAppendFormat(&out, "%s_sum%s %.9f\n", name,
                          labels.empty() ? "" : absl::StrCat("{", labels.substr(0, labels.size() - 1), "}"),
                          h.sum);
    absl::StrAppendFormat(&out, "%s_count%s %d\n", name,
                          labels.empty() ? "" : absl::StrCat("{", labels.substr(0, labels.size() - 1), "}"),
                          h.count);
  };
  absl::MutexLock lock(&mu_);
  out += "# HELP loom_requests_total Requests by plan kind and outcome.\n# TYPE loom_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    absl::StrAppendFormat(&out, "loom_requests_total{plan_kind=\"%s\",outcome=\"%s\"} %d\n", key.first,
                          key.second, n);
  }
  out += "# HELP loom_request_duration_seconds Request latency by plan kind.\n# TYPE loom_request_duration_seconds histogram\n";
  for (const auto& [kind, h] : durations_) {
    histogram("loom_request_duration_seconds", absl::StrCat("plan_kind=\"", kind, "\","), h);
  }
  out += "# HELP loom_coordinator_overhead_seconds The coordinator's own time per request.\n# TYPE loom_coordinator_overhead_seconds histogram\n";
  histogram("loom_coordinator_overhead_seconds", "", overhead_);
  out += "# HELP loom_subtask_attempts_total Model-call attempts by outcome (failed ones were retried elsewhere or failed the request).\n# TYPE loom_subtask_attempts_total counter\n";
  absl::StrAppendFormat(&out, "loom_subtask_attempts_total{outcome=\"ok\"} %d\n", attempts_ok_);
  absl::StrAppendFormat(&out, "loom_subtask_attempts_total{outcome=\"failed\"} %d\n", attempts_failed_);
  absl::StrAppendFormat(&out, "loom_subtask_attempts_total{outcome=\"cancelled\"} %d\n", attempts_cancelled_);
  out += "# HELP loom_settlements_total Requests settled in the ledger.\n# TYPE loom_settlements_total counter\n";
  absl::StrAppendFormat(&out, "loom_settlements_total %d\n", settlements_);
  out += "# HELP loom_credits_charged_micro_total Micro-credits charged to clients.\n# TYPE loom_credits_charged_micro_total counter\n";
  absl::StrAppendFormat(&out, "loom_credits_charged_micro_total %d\n", credits_);
  out += "# HELP loom_http_responses_total HTTP responses by route and status (refusals included).\n# TYPE loom_http_responses_total counter\n";
  for (const auto& [key, n] : http_) {
    absl::StrAppendFormat(&out, "loom_http_responses_total{endpoint=\"%s\",status=\"%d\"} %d\n",
                          key.first, key.second, n);
  }
  out += "# HELP loom_requests_by_model_total Requests by the model they named (loom-auto or a pin).\n# TYPE loom_requests_by_model_total counter\n";
  for (const auto& [model, n] : models_) {
    absl::StrAppendFormat(&out, "loom_requests_by_model_total{model=\"%s\"} %d\n",
                          EscapeLabel(model), n);
  }
  std::map<std::string, int> states = {{"healthy", 0}, {"suspect", 0}, {"draining", 0}};
  for (const auto& d : devices) {
    states[absl::AsciiStrToLower(absl::StripPrefix(v1::DeviceState_Name(d.state()), "DEVICE_STATE_"))]++;
  }
  out += "# HELP loom_devices Devices in the registry by state.\n# TYPE loom_devices gauge\n";
  for (const auto& [state, n] : states) {
    absl::StrAppendFormat(&out, "loom_devices{state=\"%s\"} %d\n", state, n);
  }
  absl::StrAppendFormat(&out,
                        "# HELP loom_requests_running Requests running now (both doors).\n"
                        "# TYPE loom_requests_running gauge\nloom_requests_running %d\n"
                        "# HELP loom_requests_waiting Requests waiting for a slot now.\n"
                        "# TYPE loom_requests_waiting gauge\nloom_requests_waiting %d\n",
                        running, waiting);
  out += "# HELP loom_usage_overclaims_total Usage reports claiming more output tokens than were received (only received tokens are paid).\n# TYPE loom_usage_overclaims_total counter\n";
  absl::StrAppendFormat(&out, "loom_usage_overclaims_total %d\n", overclaims_);
  out += "# HELP loom_device_usage_overclaims Overclaiming usage reports per registered device.\n# TYPE loom_device_usage_overclaims gauge\n";
  for (const auto& d : devices) {
    if (d.usage_overclaims() == 0) continue;
    absl::StrAppendFormat(&out, "loom_device_usage_overclaims{device=\"%s\"} %d\n", d.device_id(),
                          d.usage_overclaims());
  }
  if (affinities) {
    std::string blended, prior, outcomes;
    for (const v1::Affinity& a : affinities->affinities()) {
      const std::string labels = absl::StrFormat("model=\"%s\",category=\"%s\"",
                                                 EscapeLabel(a.model()), CategoryName(a.category()));
      absl::StrAppendFormat(&blended, "loom_affinity{%s} %g\n", labels, a.blended());
      absl::StrAppendFormat(&prior, "loom_affinity_prior{%s} %g\n", labels, a.prior());
      if (a.good() == 0 && a.bad() == 0) continue;
      absl::StrAppendFormat(&outcomes, "loom_affinity_outcomes{%s,outcome=\"good\"} %g\n", labels,
                            a.good());
      absl::StrAppendFormat(&outcomes, "loom_affinity_outcomes{%s,outcome=\"bad\"} %g\n", labels,
                            a.bad());
    }
    out += "# HELP loom_affinity The affinity the selector scores a model with for a category (prior blended with observed outcomes).\n# TYPE loom_affinity gauge\n";
    out += blended;
    out += "# HELP loom_affinity_prior The configured affinity of a model for a category.\n# TYPE loom_affinity_prior gauge\n";
    out += prior;
    out += "# HELP loom_affinity_outcomes Observed outcomes (weighted) of a model on a category.\n# TYPE loom_affinity_outcomes gauge\n";
    out += outcomes;
  }
  return out;
}

}  // namespace loom
