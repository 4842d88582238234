#include "coordinator/pipeline/fan_out_executor.h"

#include <thread>

#include "common/ids.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

v1::SubTask Task(const std::string& id, v1::TaskCategory category, int order,
                 std::vector<std::string> deps = {}) {
  v1::SubTask t;
  t.set_id(id);
  t.set_prompt("do " + id);
  t.set_category(category);
  t.set_order_index(order);
  for (auto& d : deps) t.add_depends_on(d);
  t.set_estimated_tokens(64);
  return t;
}

class FanOutExecutorTest : public MeshFixture {
 protected:
  absl::StatusOr<std::vector<SubTaskOutcome>> Run(const std::vector<v1::SubTask>& tasks,
                                                  Cancellation* cancel = nullptr) {
    return FanOutExecutor(&attempts_).Run(Scope(absl::Seconds(30), cancel), tasks, {});
  }
};

TEST_F(FanOutExecutorTest, IndependentSubTasksRunAtTheSameTimeOnDifferentDevices) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  // Each device answers only once both calls are in flight together: a sequential executor
  // would fail here.
  devices_.Set("q:1", {.chunks = {" code"}, .rendezvous = 2});
  devices_.Set("l:1", {.chunks = {" poem"}, .rendezvous = 2});
  auto outcomes = Run({Task("A", v1::TASK_CATEGORY_CODE, 0), Task("B", v1::TASK_CATEGORY_CREATIVE, 0)});
  ASSERT_TRUE(outcomes.ok()) << outcomes.status();
  EXPECT_EQ((*outcomes)[0].result.chosen.device_id, "q");
  EXPECT_EQ((*outcomes)[1].result.chosen.device_id, "l");
  EXPECT_EQ(devices_.max_in_flight(), 2);
}

TEST_F(FanOutExecutorTest, DependentsWaitAndReceiveTheirDependenciesOutputs) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("q:1", {.chunks = {" fn total(xs: &[i64]) -> i64"}});
  devices_.Set("l:1", {.chunks = {" Rust borrows; Python counts references."}});
  auto outcomes = Run({Task("A", v1::TASK_CATEGORY_CODE, 0),
                       Task("B", v1::TASK_CATEGORY_REASONING, 1, {"A"})});
  ASSERT_TRUE(outcomes.ok()) << outcomes.status();
  EXPECT_EQ((*outcomes)[1].result.chosen.device_id, "l");
  const std::string b_input = devices_.InputOf("B");
  EXPECT_THAT(b_input, HasSubstr("do B"));
  EXPECT_THAT(b_input, HasSubstr("fn total(xs: &[i64]) -> i64"));
  EXPECT_EQ((*outcomes)[1].input, b_input);
  // A finished before B started: B's first call came after A's.
  auto calls = devices_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].request.sub_task_id(), "A");
  EXPECT_EQ(devices_.max_in_flight(), 1);
}

TEST_F(FanOutExecutorTest, FailedAttemptMovesToAnotherDevice) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("m", "mistral-7b", "mistral");
  devices_.Set("q:1", {.chunks = {" partial"}, .status = absl::UnavailableError("stream broke")});
  auto outcomes = Run({Task("A", v1::TASK_CATEGORY_CODE, 0)});
  ASSERT_TRUE(outcomes.ok()) << outcomes.status();
  EXPECT_EQ((*outcomes)[0].result.chosen.device_id, "m");
  EXPECT_EQ((*outcomes)[0].result.attempt, 2);
  auto attempts = log_.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_THAT(attempts[0].reason(), HasSubstr("stream broke"));
}

TEST_F(FanOutExecutorTest, HungDeviceHitsTheAttemptDeadlineAndIsRetried) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("m", "mistral-7b", "mistral");
  devices_.Set("q:1", {.chunks = {}, .hang = true});
  AttemptRunner quick({.max_attempts = 3, .attempt_timeout = absl::Milliseconds(50)}, &registry_,
                      &selector_, &devices_, &clock_);
  auto outcomes = FanOutExecutor(&quick).Run(Scope(), {Task("A", v1::TASK_CATEGORY_CODE, 0)}, {});
  ASSERT_TRUE(outcomes.ok()) << outcomes.status();
  EXPECT_EQ((*outcomes)[0].result.chosen.device_id, "m");
  EXPECT_THAT(log_.attempts()[0].reason(), HasSubstr("DEADLINE_EXCEEDED"));
}

TEST_F(FanOutExecutorTest, FinalFailureNamesTheSubTaskAndStopsTheOthers) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("q:1", {.status = absl::UnavailableError("down")});
  devices_.Set("l:1", {.chunks = {" slow"}, .wait_for_cancel = true});
  // A (code) fails on q and then on l... but l is busy with B (creative) until cancelled.
  AttemptRunner one({.max_attempts = 1}, &registry_, &selector_, &devices_, &clock_);
  auto outcomes = FanOutExecutor(&one).Run(
      Scope(), {Task("A", v1::TASK_CATEGORY_CODE, 0), Task("B", v1::TASK_CATEGORY_CREATIVE, 0)}, {});
  ASSERT_FALSE(outcomes.ok());
  EXPECT_EQ(outcomes.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(outcomes.status().message(), HasSubstr("sub-task A (code: do A) failed"));
}

TEST_F(FanOutExecutorTest, RequestCancellationReachesEveryInFlightAttempt) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("q:1", {.chunks = {}, .wait_for_cancel = true});
  devices_.Set("l:1", {.chunks = {}, .wait_for_cancel = true});
  Cancellation cancel;
  std::thread canceller([&] {
    // Cancel once both attempts are in flight.
    while (devices_.max_in_flight() < 2) std::this_thread::yield();
    cancel.Cancel();
  });
  auto outcomes = Run({Task("A", v1::TASK_CATEGORY_CODE, 0), Task("B", v1::TASK_CATEGORY_CREATIVE, 0)},
                      &cancel);
  canceller.join();
  EXPECT_EQ(outcomes.status().code(), absl::StatusCode::kCancelled);
  for (const auto& d : registry_.Snapshot()) EXPECT_EQ(d.coordinator_inflight(), 0);
}

TEST_F(FanOutExecutorTest, MissingDependencyIsAnError) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  auto outcomes = Run({Task("A", v1::TASK_CATEGORY_CODE, 1, {"nope"})});
  EXPECT_EQ(outcomes.status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace loom
