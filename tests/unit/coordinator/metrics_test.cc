// Metrics::Render as a scraper reads it: every sample line parses, and each recorded event is
// in its family.
#include "coordinator/pipeline/metrics.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_NE(space, absl::string_view::npos) << line;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    out[std::string(line.substr(0, space))] = value;
  }
  return out;
}

TEST(MetricsTest, EveryRecordedEventIsInItsFamily) {
  Metrics m;
  m.RecordRequest(v1::PLAN_KIND_PASSTHROUGH, absl::OkStatus(), absl::Milliseconds(3));
  m.RecordRequest(v1::PLAN_KIND_PASSTHROUGH, absl::NotFoundError("model"), absl::Milliseconds(1));
  m.RecordRequest(v1::PLAN_KIND_COMPILED, absl::OkStatus(), absl::Seconds(2));
  m.RecordOverhead(absl::Microseconds(80));
  m.RecordAttempt(v1::ATTEMPT_OUTCOME_OK);
  m.RecordAttempt(v1::ATTEMPT_OUTCOME_FAILED);
  m.RecordOverclaim();
  m.RecordSettlement(1500);
  m.RecordSettlement(500);
  m.RecordHttpResponse("/v1/chat/completions", 200);
  m.RecordHttpResponse("/v1/chat/completions", 429);
  m.RecordModel("loom-auto");
  v1::DeviceInfo healthy;
  healthy.set_device_id("dev-a");
  healthy.set_state(v1::DEVICE_STATE_HEALTHY);
  healthy.set_usage_overclaims(1);
  v1::ListAffinitiesResponse affinities;
  v1::Affinity* a = affinities.add_affinities();
  a->set_model("qwen2.5-coder-7b");
  a->set_category(v1::TASK_CATEGORY_CODE);
  a->set_prior(0.9);
  a->set_blended(0.85);
  a->set_bad(1);
  auto s = Samples(m.Render({healthy}, /*running=*/2, /*waiting=*/1, &affinities));
  EXPECT_EQ(s["loom_requests_total{plan_kind=\"passthrough\",outcome=\"ok\"}"], 1);
  EXPECT_EQ(s["loom_requests_total{plan_kind=\"passthrough\",outcome=\"not_found\"}"], 1);
  EXPECT_EQ(s["loom_request_duration_seconds_count{plan_kind=\"passthrough\"}"], 2);
  EXPECT_EQ(s["loom_request_duration_seconds_bucket{plan_kind=\"compiled\",le=\"1\"}"], 0);
  EXPECT_EQ(s["loom_request_duration_seconds_bucket{plan_kind=\"compiled\",le=\"2.5\"}"], 1);
  EXPECT_EQ(s["loom_coordinator_overhead_seconds_bucket{le=\"0.0001\"}"], 1);
  EXPECT_EQ(s["loom_subtask_attempts_total{outcome=\"ok\"}"], 1);
  EXPECT_EQ(s["loom_subtask_attempts_total{outcome=\"failed\"}"], 1);
  EXPECT_EQ(s.count("loom_subtask_attempts_total{outcome=\"cancelled\"}"), 1u);  // shown at 0
  EXPECT_EQ(s["loom_usage_overclaims_total"], 1);
  EXPECT_EQ(s["loom_settlements_total"], 2);
  EXPECT_EQ(s["loom_credits_charged_micro_total"], 2000);
  EXPECT_EQ(s["loom_http_responses_total{endpoint=\"/v1/chat/completions\",status=\"429\"}"], 1);
  EXPECT_EQ(s["loom_requests_by_model_total{model=\"loom-auto\"}"], 1);
  EXPECT_EQ(s["loom_devices{state=\"healthy\"}"], 1);
  EXPECT_EQ(s["loom_devices{state=\"draining\"}"], 0);
  EXPECT_EQ(s["loom_device_usage_overclaims{device=\"dev-a\"}"], 1);
  EXPECT_EQ(s["loom_requests_running"], 2);
  EXPECT_EQ(s["loom_requests_waiting"], 1);
  EXPECT_DOUBLE_EQ(s["loom_affinity{model=\"qwen2.5-coder-7b\",category=\"code\"}"], 0.85);
  EXPECT_DOUBLE_EQ(s["loom_affinity_prior{model=\"qwen2.5-coder-7b\",category=\"code\"}"], 0.9);
  EXPECT_EQ(s["loom_affinity_outcomes{model=\"qwen2.5-coder-7b\",category=\"code\",outcome=\"bad\"}"], 1);
}

}  // namespace
}  // namespace loom
