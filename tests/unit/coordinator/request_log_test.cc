#include "coordinator/pipeline/request_log.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

v1::CompleteRequest Ask(const std::string& text) {
  v1::CompleteRequest r;
  auto* system = r.add_messages();
  system->set_role("system");
  system->set_content("be brief");
  auto* user = r.add_messages();
  user->set_role("user");
  user->set_content(text);
  return r;
}

v1::CompleteEvent PlanEvent(int sub_tasks) {
  v1::CompleteEvent e;
  e.mutable_plan()->set_kind(v1::PLAN_KIND_COMPILED);
  for (int i = 0; i < sub_tasks; ++i) {
    e.mutable_plan()->add_sub_tasks()->set_id(absl::StrCat("t", i));
  }
  return e;
}

TEST(RequestLogTest, KeepsTheNewestFirstAndForgetsTheOldestPastItsCapacity) {
  SimulatedClock clock(absl::FromUnixSeconds(1000));
  RequestLog log(3, &clock);
  for (int i = 0; i < 5; ++i) {
    log.Begin(absl::StrCat("r", i), absl::StrCat("r", i), "client:alice", Ask("hi"));
    clock.Advance(absl::Seconds(1));
  }
  EXPECT_THAT(log.List("", 10), ElementsAre(Field(&RequestLog::Entry::id, "r4"),
                                            Field(&RequestLog::Entry::id, "r3"),
                                            Field(&RequestLog::Entry::id, "r2")));
  EXPECT_FALSE(log.Get("r0", "").has_value());
  EXPECT_EQ(log.List("", 2).size(), 2u);
}

TEST(RequestLogTest, AClientSeesOnlyItsOwnRequests) {
  RequestLog log(10);
  log.Begin("client:alice/a1", "a1", "client:alice", Ask("mine"));
  log.Begin("b1", "b1", "client:bob", Ask("his"));
  EXPECT_THAT(log.List("client:alice", 10), ElementsAre(Field(&RequestLog::Entry::display_id, "a1")));
  EXPECT_EQ(log.List("", 10).size(), 2u);
  EXPECT_TRUE(log.Get("b1", "client:bob").has_value());
  EXPECT_FALSE(log.Get("b1", "client:alice").has_value()) << "as if it did not exist";
}

TEST(RequestLogTest, ARunningRequestGainsItsPlanAndEventsThenItsResult) {
  SimulatedClock clock(absl::FromUnixSeconds(1000));
  RequestLog log(10, &clock);
  log.Begin("r1", "r1", "client:alice", Ask("1. a 2. b"));
  std::optional<RequestLog::Entry> e = log.Get("r1", "");
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->running);
  EXPECT_EQ(e->prompt, "1. a 2. b") << "the last user message, not the system one";

  log.Event("r1", PlanEvent(2));
  v1::CompleteEvent started;
  started.mutable_sub_task()->set_kind(v1::SubTaskEvent::KIND_STARTED);
  started.mutable_sub_task()->set_sub_task_id("t0");
  log.Event("r1", started);
  v1::CompleteEvent delta;
  delta.mutable_output()->set_text("ignored");
  log.Event("r1", delta);
  e = log.Get("r1", "");
  EXPECT_EQ(e->response.plan().sub_tasks_size(), 2);
  ASSERT_EQ(e->events.size(), 1u) << "plans and sub-task events only";

  clock.Advance(absl::Milliseconds(250));
  v1::CompleteResponse done;
  done.set_output(std::string(5000, 'x'));
  done.set_cost_micro(42);
  log.End("r1", done);
  e = log.Get("r1", "");
  EXPECT_FALSE(e->running);
  EXPECT_EQ(e->finished - e->started, absl::Milliseconds(250));
  EXPECT_EQ(e->response.cost_micro(), 42);
  EXPECT_LE(e->response.output().size(), RequestLog::kOutputPreviewBytes + 3) << "a preview";

  log.Event("r1", started);  // late events change nothing
  EXPECT_EQ(log.Get("r1", "")->events.size(), 1u);
}

TEST(RequestLogTest, AUnaryRequestShowsItsPlanAndEachAttemptAsItEnds) {
  RequestLog log(10);
  log.Begin("r1", "r1", "client:alice", Ask("x"));
  v1::CompilationPlan plan;
  plan.set_kind(v1::PLAN_KIND_COMPILED);
  plan.add_sub_tasks()->set_prompt(std::string(1000, 'p'));
  log.Plan("r1", plan);
  v1::Attempt failed;
  failed.set_sub_task_id("t0");
  failed.set_outcome(v1::ATTEMPT_OUTCOME_FAILED);
  failed.set_reason("UNAVAILABLE: device gone");
  log.Attempt("r1", failed);
  std::optional<RequestLog::Entry> e = log.Get("r1", "");
  EXPECT_TRUE(e->running);
  EXPECT_EQ(e->response.plan().kind(), v1::PLAN_KIND_COMPILED);
  EXPECT_LE(e->response.plan().sub_tasks(0).prompt().size(), RequestLog::kPromptPreviewBytes + 3);
  ASSERT_EQ(e->response.attempts_size(), 1);
  EXPECT_EQ(e->response.attempts(0).reason(), "UNAVAILABLE: device gone");
  log.Plan("unknown", plan);  // nothing to update
  EXPECT_EQ(log.List("", 10).size(), 1u);
}

TEST(RequestLogTest, AFailedRequestKeepsWhatItHadAndSaysWhy) {
  RequestLog log(10);
  log.Begin("r1", "r1", "client:alice", Ask("x"));
  log.Event("r1", PlanEvent(1));
  log.End("r1", absl::UnavailableError("no device serves mistral-7b"));
  std::optional<RequestLog::Entry> e = log.Get("r1", "");
  EXPECT_FALSE(e->running);
  EXPECT_THAT(e->error, ::testing::HasSubstr("no device serves mistral-7b"));
  EXPECT_EQ(e->response.plan().sub_tasks_size(), 1);
}

TEST(RequestLogTest, PromptsAreCutOnACharacterBoundary) {
  RequestLog log(10);
  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += "é";  // two bytes each
  log.Begin("r1", "r1", "client:alice", Ask(long_prompt));
  const std::string kept = log.Get("r1", "")->prompt;
  EXPECT_LE(kept.size(), RequestLog::kPromptPreviewBytes + 3);
  EXPECT_EQ(kept.substr(kept.size() - 3), "…");
  EXPECT_EQ((kept.size() - 3) % 2, 0u) << "no half character";
}

}  // namespace
}  // namespace loom
