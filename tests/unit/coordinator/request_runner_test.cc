#include "coordinator/request_runner.h"

#include <thread>

#include "common/protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/sqlite_ledger.h"
#include "tests/fakes/fake_device_client.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

class RequestRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ledger_ = *SqliteLedger::Open({.path = ":memory:", .clock = &clock_});
    runner_ = std::make_unique<RequestRunner>(RunnerOptions{.max_attempts = 3}, &registry_,
                                              &devices_, ledger_.get(), &clock_);
  }

  void AddDevice(const std::string& id, const std::string& model, const std::string& family,
                 int active = 0) {
    v1::RegisterRequest r;
    r.mutable_protocol_version()->set_major(kProtocolMajor);
    r.set_device_id(id);
    r.set_provider_id("prov-" + id);
    r.set_address(id + ":1");
    auto* m = r.add_models();
    m->set_name(model);
    m->set_family(family);
    m->set_parameters_b(8);
    r.mutable_load()->set_active(active);
    r.mutable_load()->set_max_concurrency(4);
    ASSERT_TRUE(registry_.Register(r).ok());
    devices_.Set(id + ":1", {});
  }

  static v1::CompleteRequest Ask(const std::string& prompt) {
    v1::CompleteRequest r;
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content(prompt);
    r.set_client_id("alice");
    return r;
  }

  absl::StatusOr<v1::CompleteResponse> Run(const v1::CompleteRequest& r,
                                           std::vector<v1::CompleteEvent>* events = nullptr,
                                           Cancellation* cancel = nullptr) {
    Cancellation local;
    return runner_->Run(
        r, absl::InfiniteFuture(),
        [events](const v1::CompleteEvent& e) {
          if (events) events->push_back(e);
        },
        cancel ? cancel : &local);
  }

  SimulatedClock clock_;
  DeviceRegistry registry_{{}, &clock_};
  FakeDeviceClient devices_;
  std::unique_ptr<SqliteLedger> ledger_;
  std::unique_ptr<RequestRunner> runner_;
};

TEST_F(RequestRunnerTest, PassthroughAnswersRecordsAndSettles) {
  AddDevice("a", "llama-3.1-8b", "llama");
  std::vector<v1::CompleteEvent> events;
  auto response = Run(Ask("tell me a story"), &events);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->output(), " hello world");
  EXPECT_EQ(response->plan().kind(), v1::PLAN_KIND_PASSTHROUGH);
  ASSERT_EQ(response->contributions_size(), 1);
  const auto& c = response->contributions(0);
  EXPECT_EQ(c.device_id(), "a");
  EXPECT_EQ(c.provider_id(), "prov-a");
  EXPECT_EQ(c.token_count(), 2);
  EXPECT_EQ(c.credits_micro(), 2 * 8000 / 1000);
  EXPECT_DOUBLE_EQ(c.weight(), 1.0);
  EXPECT_EQ(response->cost_micro(), c.credits_micro());
  EXPECT_FALSE(response->settlement_id().empty());
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), -c.credits_micro());
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("prov-a")), c.credits_micro());
  // plan, started, two output chunks, finished, final
  ASSERT_EQ(events.size(), 6u);
  EXPECT_TRUE(events.front().has_plan());
  EXPECT_TRUE(events.back().has_final());
  // The device's in-flight count went back to zero.
  EXPECT_EQ(registry_.Snapshot()[0].coordinator_inflight(), 0);
}

TEST_F(RequestRunnerTest, RequestedModelAndFamilyAreHonoured) {
  AddDevice("a", "llama-3.1-8b", "llama");
  AddDevice("b", "qwen2.5-coder-7b", "qwen-coder", /*active=*/3);
  auto r = Ask("x");
  r.set_family("qwen-coder");
  EXPECT_EQ(Run(r)->contributions(0).device_id(), "b");
  r.clear_family();
  r.set_model("gpt-9");
  auto missing = Run(r);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("gpt-9"));
}

TEST_F(RequestRunnerTest, FailedAttemptIsRetriedOnAnotherDeviceAndNotPaid) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama", /*active=*/1);
  devices_.Set("a:1", {.chunks = {" partial"}, .status = absl::UnavailableError("stream broke")});
  std::vector<v1::CompleteEvent> events;
  auto response = Run(Ask("x"), &events);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->output(), " hello world");  // the failed attempt's text is discarded
  ASSERT_EQ(response->attempts_size(), 2);
  EXPECT_EQ(response->attempts(0).device_id(), "a");
  EXPECT_EQ(response->attempts(0).outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_THAT(response->attempts(0).reason(), HasSubstr("stream broke"));
  EXPECT_EQ(response->attempts(1).device_id(), "b");
  ASSERT_EQ(response->contributions_size(), 1);
  EXPECT_EQ(response->contributions(0).device_id(), "b");
  EXPECT_EQ(response->contributions(0).attempt(), 2);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("prov-a")), 0);
  bool retried = false;
  for (const auto& e : events) {
    retried |= e.has_sub_task() && e.sub_task().kind() == v1::SubTaskEvent::KIND_RETRIED;
  }
  EXPECT_TRUE(retried);
}

TEST_F(RequestRunnerTest, EveryDeviceFailingIsAClearErrorAndChargesNothing) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama");
  devices_.Set("a:1", {.status = absl::UnavailableError("down")});
  devices_.Set("b:1", {.status = absl::ResourceExhaustedError("busy")});
  auto response = Run(Ask("x"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(response.status().message(), HasSubstr("a: UNAVAILABLE: down"));
  EXPECT_THAT(response.status().message(), HasSubstr("b: RESOURCE_EXHAUSTED: busy"));
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 0);
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
}

TEST_F(RequestRunnerTest, NonRetryableErrorStopsAtOnce) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama", 1);
  devices_.Set("a:1", {.status = absl::InvalidArgumentError("prompt too long for this model")});
  auto response = Run(Ask("x"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(devices_.calls().size(), 1u);
}

TEST_F(RequestRunnerTest, AttemptsAreBounded) {
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    AddDevice(id, "m", "llama");
    devices_.Set(std::string(id) + ":1", {.status = absl::UnavailableError("down")});
  }
  EXPECT_FALSE(Run(Ask("x")).ok());
  EXPECT_EQ(devices_.calls().size(), 3u);
}

TEST_F(RequestRunnerTest, CancellationReachesTheAttemptAndChargesNothing) {
  AddDevice("a", "m", "llama");
  devices_.Set("a:1", {.chunks = {" hi"}, .wait_for_cancel = true});
  Cancellation cancel;
  std::vector<v1::CompleteEvent> events;
  // Cancel as soon as output arrives, from the event sink, as a disconnecting client would.
  auto response = runner_->Run(Ask("x"), absl::InfiniteFuture(),
                               [&](const v1::CompleteEvent& e) {
                                 if (e.has_output()) cancel.Cancel();
                               },
                               &cancel);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
}

TEST_F(RequestRunnerTest, BadRequestsAreRefusedBeforeAnyDeviceWorks) {
  AddDevice("a", "m", "llama");
  v1::CompleteRequest empty;
  EXPECT_EQ(Run(empty).status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_role = Ask("x");
  bad_role.mutable_messages(0)->set_role("robot");
  EXPECT_THAT(Run(bad_role).status().message(), HasSubstr("role"));
  auto big = Ask(std::string(300 * 1024, 'x'));
  EXPECT_EQ(Run(big).status().code(), absl::StatusCode::kInvalidArgument);
  auto tokens = Ask("x");
  tokens.set_max_tokens(-1);
  EXPECT_EQ(Run(tokens).status().code(), absl::StatusCode::kInvalidArgument);
  auto compiled = Ask("x");
  compiled.set_mode(v1::PLAN_KIND_COMPILED);
  EXPECT_EQ(Run(compiled).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(devices_.calls().empty());
}

TEST_F(RequestRunnerTest, ClientRequestIdMakesSettlementIdempotent) {
  AddDevice("a", "m", "llama");
  auto r = Ask("x");
  r.set_request_id("req-fixed");
  auto first = Run(r);
  auto second = Run(r);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->settlement_id(), second->settlement_id());
  EXPECT_EQ(ledger_->ListRecords({})->size(), 1u);
}

}  // namespace
}  // namespace loom
