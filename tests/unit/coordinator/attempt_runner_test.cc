// AttemptRunner on its own, on the fixture's simulated clock: retries on another device, a
// deadline reached in simulated time, an attempt that finishes past its deadline, a worker
// that claims more tokens than it sent.
#include "coordinator/pipeline/attempt_runner.h"

#include "gtest/gtest.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

class AttemptRunnerTest : public MeshFixture {
 protected:
  void SetUp() override {
    AddDevice("a", "qwen2.5-coder-7b", "qwen-coder");
    AddDevice("b", "qwen2.5-coder-7b", "qwen-coder", /*active=*/1);  // a is chosen first
  }
  absl::StatusOr<CallResult> Call(absl::Duration timeout = absl::Seconds(30)) {
    CallSpec spec;
    spec.sub_task_id = "t1";
    spec.messages = {User("write a function")};
    spec.categories = {v1::TASK_CATEGORY_CODE};
    const RequestScope scope = Scope(timeout);
    return attempts_.Run(scope.request_id, spec, scope.deadline, scope.cancel, {}, scope.log);
  }
  int64_t Overclaims(const std::string& device) {
    for (const v1::DeviceInfo& d : registry_.Snapshot()) {
      if (d.device_id() == device) return d.usage_overclaims();
    }
    return -1;
  }
};

TEST_F(AttemptRunnerTest, AnUnavailableDeviceIsRetriedOnAnother) {
  devices_.Set("a:1", {.chunks = {}, .status = absl::UnavailableError("worker gone")});
  auto result = Call();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->chosen.device_id, "b");
  EXPECT_EQ(result->attempt, 2);
  EXPECT_EQ(result->output, " hello world");
  const std::vector<v1::Attempt> attempts = log_.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].device_id(), "a");
  EXPECT_EQ(attempts[0].outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_EQ(attempts[1].outcome(), v1::ATTEMPT_OUTCOME_OK);
}

TEST_F(AttemptRunnerTest, ANonRetryableErrorIsReturnedWithoutAnotherAttempt) {
  devices_.Set("a:1", {.chunks = {}, .status = absl::InvalidArgumentError("bad prompt")});
  auto result = Call();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(devices_.calls().size(), 1u);
}

// The device hangs; simulated time jumps to the call's deadline, which is the request's (10 s,
// before the 30 s attempt timeout): the runner gives up without trying b, and says why.
TEST_F(AttemptRunnerTest, TheRequestDeadlineOnTheClockEndsTheRetries) {
  devices_.Set("a:1", {.chunks = {}, .hang = true});
  const absl::Time start = clock_.Now();
  auto result = Call(absl::Seconds(10));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(result.status().message().find("ran out of time after 1 attempt(s)"), std::string::npos)
      << result.status();
  EXPECT_EQ(devices_.calls().size(), 1u);
  EXPECT_EQ(clock_.Now() - start, absl::Seconds(10));
  ASSERT_EQ(devices_.calls()[0].deadline, start + absl::Seconds(10));
}

// An attempt that answers after its own deadline (the device took 600 ms of a 500 ms attempt) is
// neither used nor paid: the sub-task goes to b, within the request's 30 s.
TEST_F(AttemptRunnerTest, AnAnswerPastTheAttemptDeadlineIsNotUsed) {
  const AttemptRunner quick({.max_attempts = 3, .attempt_timeout = absl::Milliseconds(500)}, &registry_,
                            &selector_, &devices_, &clock_);
  devices_.Set("a:1", {.takes = absl::Milliseconds(600)});
  CallSpec spec;
  spec.sub_task_id = "t1";
  spec.messages = {User("write a function")};
  spec.categories = {v1::TASK_CATEGORY_CODE};
  const RequestScope scope = Scope();
  auto result = quick.Run(scope.request_id, spec, scope.deadline, scope.cancel, {}, scope.log);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->chosen.device_id, "b");
  const std::vector<v1::Attempt> attempts = log_.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_NE(attempts[0].reason().find("after its deadline; not paid"), std::string::npos)
      << attempts[0].reason();
}

// A worker claiming 100 tokens for the 2 it sent is credited 2 and flagged.
TEST_F(AttemptRunnerTest, OverClaimedTokensAreCreditedAsReceivedAndFlagged) {
  devices_.Set("a:1", {.claimed_tokens = 100});
  auto result = Call();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, 2);
  EXPECT_EQ(Overclaims("a"), 1);
  // A claim within the tolerance is not flagged.
  devices_.Set("a:1", {.claimed_tokens = 3});
  ASSERT_TRUE(Call().ok());
  EXPECT_EQ(Overclaims("a"), 1);
}

}  // namespace
}  // namespace loom
