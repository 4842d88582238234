#include "coordinator/pipeline/request_runner.h"


#include <thread>

#include "absl/strings/match.h"
#include "common/protocol.h"
#include "common/tokens.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"
#include "ledger/sqlite_ledger.h"
#include "tests/fakes/category_models.h"
#include "tests/fakes/mesh_fixture.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGranted = 10 * kMicroPerCredit;

class RequestRunnerTest : public MeshFixture {
 protected:
  void SetUp() override {
    ledger_ = *SqliteLedger::Open({.path = ":memory:", .clock = &clock_});
    ASSERT_TRUE(ledger_->Grant(ClientAccount("alice"), kGranted, "setup").ok());
    RunnerOptions options;
    options.attempts.max_attempts = 3;
    runner_ = std::make_unique<RequestRunner>(options, &registry_, &selector_, &devices_,
                                              ledger_.get(), &clock_);
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
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted - c.credits_micro());
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("prov-a")), c.credits_micro());
  // plan, started, two output chunks, finished, final
  ASSERT_EQ(events.size(), 6u);
  EXPECT_TRUE(events.front().has_plan());
  EXPECT_TRUE(events.back().has_final());
  // The device's in-flight count went back to zero.
  EXPECT_EQ(registry_.Snapshot()[0].coordinator_inflight(), 0);
}

TEST_F(RequestRunnerTest, SamplingReachesTheDeviceAndItsFinishReasonComesBack) {
  AddDevice("a", "llama-3.1-8b", "llama");
  devices_.Set("a:1", {.chunks = {" cut", " short"}, .finish_reason = "length"});
  v1::CompleteRequest r = Ask("tell me a story");
  r.set_max_tokens(2);
  r.mutable_sampling()->set_temperature(0.1);
  r.mutable_sampling()->add_stop("END");
  auto response = Run(r);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->finish_reason(), "length");
  const std::vector<DeviceCall> calls = devices_.calls();
  ASSERT_EQ(calls.size(), 1u);
  const v1::InferRequest& sent = calls[0].request;
  EXPECT_EQ(sent.max_tokens(), 2);
  EXPECT_DOUBLE_EQ(sent.sampling().temperature(), 0.1);
  ASSERT_EQ(sent.sampling().stop_size(), 1);
}

TEST_F(RequestRunnerTest, WithoutMaxTokensTheDeviceLimitAppliesAndTheReservationCoversIt) {
  // No silent 512: the device gets max_tokens 0 (its own limit), a device that says nothing
  // about why it stopped gets "stop", and what is credited stays within what was reserved.
  AddDevice("a", "llama-3.1-8b", "llama");
  std::vector<std::string> many(600, " w");
  devices_.Set("a:1", {.chunks = many});
  auto response = Run(Ask("tell me a story"));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(devices_.calls().size(), 1u);
  EXPECT_EQ(devices_.calls()[0].request.max_tokens(), 0);
  EXPECT_EQ(response->finish_reason(), "stop");
  EXPECT_EQ(response->usage().completion_tokens(), 600) << "not cut at 512";
}

TEST_F(RequestRunnerTest, RequestedModelAndFamilyAreHonoured) {
  AddDevice("a", "llama-3.1-8b", "llama");
  AddDevice("b", "qwen2.5-coder-7b", "qwen-coder", /*active=*/3);
  auto r = Ask("What is the capital of France?");
  r.set_family("qwen-coder");
  EXPECT_EQ(Run(r)->contributions(0).device_id(), "b");
  r.clear_family();
  r.set_model("gpt-9");
  auto missing = Run(r);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("gpt-9"));
}

// Unary: nobody saw the failed attempt's text, so it is discarded and not paid.
TEST_F(RequestRunnerTest, FailedAttemptIsRetriedOnAnotherDeviceAndNotPaid) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama", /*active=*/1);
  devices_.Set("a:1", {.chunks = {" partial"}, .status = absl::UnavailableError("stream broke")});
  auto response = runner_->Run(Ask("What is the capital of France?"), absl::InfiniteFuture(),
                               nullptr, nullptr);
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
}

// The streamed text of all events with answer set, in order: what an HTTP client reads.
std::string StreamedAnswer(const std::vector<v1::CompleteEvent>& events) {
  std::string text;
  for (const auto& e : events) {
    if (e.has_output() && e.output().answer()) text += e.output().text();
  }
  return text;
}

// The report: a stream retried after its device died handed the client the dead device's
// partial text followed by the survivor's whole answer. Now the survivor continues the text.
TEST_F(RequestRunnerTest, AStreamWhoseDeviceDiesIsContinuedByTheNextDeviceAsOneAnswer) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama", /*active=*/1, 8, true, {"continue"});
  devices_.Set("a:1", {.chunks = {" The capital", " of France"},
                       .status = absl::UnavailableError("device died")});
  devices_.Set("b:1", {.chunks = {" is Paris."}});
  auto ask = Ask("What is the capital of France?");
  ask.set_max_tokens(100);
  std::vector<v1::CompleteEvent> events;
  auto response = Run(ask, &events);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->output(), " The capital of France is Paris.");
  EXPECT_EQ(StreamedAnswer(events), response->output()) << "the client read one answer";
  // b was asked to continue a's text, within what is left of the limit.
  const std::vector<DeviceCall> calls = devices_.calls();
  ASSERT_EQ(calls.size(), 2u);
  const v1::InferRequest& resumed = calls[1].request;
  ASSERT_GE(resumed.messages_size(), 2);
  EXPECT_EQ(resumed.messages(resumed.messages_size() - 1).role(), "assistant");
  EXPECT_EQ(resumed.messages(resumed.messages_size() - 1).content(), " The capital of France");
  const int64_t a_tokens = CountTokens(" The capital of France");
  EXPECT_EQ(resumed.max_tokens(), 100 - a_tokens);
  // Each device is paid for its own part.
  ASSERT_EQ(response->contributions_size(), 2);
  EXPECT_EQ(response->contributions(0).device_id(), "a");
  EXPECT_EQ(response->contributions(0).token_count(), a_tokens);
  EXPECT_EQ(response->contributions(1).device_id(), "b");
  EXPECT_EQ(response->contributions(1).token_count(), CountTokens(" is Paris."));
  EXPECT_GT(*ledger_->Balance(ProviderAccount("prov-a")), 0);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

// Found by fuzz/compiled_plan_fuzzer: a device's bytes went into events (proto strings) as
// they came. A character cut between chunks is now held for its tail; ill-formed bytes
// become U+FFFD.
TEST_F(RequestRunnerTest, DeviceTextIsValidUtf8InTheAnswerAndInEveryEvent) {
  AddDevice("a", "m", "llama");
  devices_.Set("a:1", {.chunks = {" caf\xC3", "\xA9 ok \xFF", " \xE6\x97"}});
  std::vector<v1::CompleteEvent> events;
  auto response = Run(Ask("What is the capital of France?"), &events);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->output(), " caf\xC3\xA9 ok \xEF\xBF\xBD \xEF\xBF\xBD");
  for (const auto& e : events) {
    if (e.has_output()) {
      EXPECT_TRUE(IsValidUtf8(e.output().text())) << e.output().text();
    }
  }
  EXPECT_EQ(StreamedAnswer(events), response->output());
}

// The report: one dear device made every client get 402, even for the cheap model. A client
// who cannot afford it is now served by the devices it can afford.
TEST_F(RequestRunnerTest, ADeviceTooDearForAClientIsLeftOutForItNotA402ForTheMesh) {
  AddDevice("cheap", "small-8b", "llama", 0, /*parameters_b=*/8);
  AddDevice("dear", "huge-70000b", "llama", 0, /*parameters_b=*/70000);  // 70 credits per 1k
  ASSERT_TRUE(ledger_->Grant(ClientAccount("bob"), kMicroPerCredit, "bob").ok());  // 1 credit
  for (int i = 0; i < 3; ++i) {
    auto ask = Ask(absl::StrCat("What is the capital of France? ", i));
    ask.set_client_id("bob");
    auto response = Run(ask);
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_EQ(response->contributions_size(), 1);
    EXPECT_EQ(response->contributions(0).device_id(), "cheap");
  }
  // The dear model asked for by name: served for a client who can afford it, 402 for bob.
  auto pinned = Ask("What is the capital of Spain?");
  pinned.set_model("huge-70000b");
  pinned.set_max_tokens(100);  // 7 credits at most: alice has 10
  auto rich = Run(pinned);
  ASSERT_TRUE(rich.ok()) << rich.status();
  EXPECT_EQ(rich->contributions(0).device_id(), "dear");
  pinned.set_client_id("bob");
  EXPECT_TRUE(IsInsufficientCredits(Run(pinned).status()));
  // The cheap model asked for by name is priced as itself, not as the dearest on the mesh.
  pinned.set_model("small-8b");
  pinned.set_max_tokens(0);
  auto cheap = Run(pinned);
  ASSERT_TRUE(cheap.ok()) << cheap.status();
  EXPECT_EQ(cheap->contributions(0).device_id(), "cheap");
  // Too poor even for the cheap device: 402 as before, nothing run.
  ASSERT_TRUE(ledger_->Grant(ClientAccount("carol"), 1, "carol").ok());
  auto poor = Ask("What is the capital of Italy?");
  poor.set_client_id("carol");
  const size_t calls = devices_.calls().size();
  EXPECT_TRUE(IsInsufficientCredits(Run(poor).status())) << Run(poor).status();
  EXPECT_EQ(devices_.calls().size(), calls);
}

TEST_F(RequestRunnerTest, AStreamTheNextDeviceCannotContinueSaysItRestarts) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama", /*active=*/1);  // no "continue" capability
  devices_.Set("a:1", {.chunks = {" partial"}, .status = absl::UnavailableError("stream broke")});
  std::vector<v1::CompleteEvent> events;
  auto response = Run(Ask("What is the capital of France?"), &events);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->output(), " hello world") << "the answer is b's own";
  const std::string streamed = StreamedAnswer(events);
  EXPECT_THAT(streamed, HasSubstr("the answer starts again on another device"));
  EXPECT_TRUE(absl::StartsWith(streamed, " partial"));
  EXPECT_TRUE(absl::EndsWith(streamed, " hello world"));
  // a is paid for the part the client read; b for its answer.
  ASSERT_EQ(response->contributions_size(), 2);
  EXPECT_EQ(response->contributions(0).device_id(), "a");
  EXPECT_EQ(response->contributions(0).token_count(), CountTokens(" partial"));
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
  auto response = Run(Ask("What is the capital of France?"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(response.status().message(), HasSubstr("a: UNAVAILABLE: down"));
  EXPECT_THAT(response.status().message(), HasSubstr("b: RESOURCE_EXHAUSTED: busy"));
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted);
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), kGranted) << "reservation released";
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
}

TEST_F(RequestRunnerTest, EveryDeviceBusyIsResourceExhaustedSoClientsComeBack) {
  // 429 over HTTP (with Retry-After), not 503: nothing is broken, the mesh is full.
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama");
  devices_.Set("a:1", {.status = absl::ResourceExhaustedError("busy")});
  devices_.Set("b:1", {.status = absl::ResourceExhaustedError("busy")});
  auto response = Run(Ask("What is the capital of France?"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response.status().message(), HasSubstr("busy (2 tried)"));
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), kGranted) << "reservation released";
}

TEST_F(RequestRunnerTest, NonRetryableErrorStopsAtOnce) {
  AddDevice("a", "m", "llama");
  AddDevice("b", "m", "llama", 1);
  devices_.Set("a:1", {.status = absl::InvalidArgumentError("prompt too long for this model")});
  auto response = Run(Ask("What is the capital of France?"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(devices_.calls().size(), 1u);
}

TEST_F(RequestRunnerTest, AttemptsAreBounded) {
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    AddDevice(id, "m", "llama");
    devices_.Set(std::string(id) + ":1", {.status = absl::UnavailableError("down")});
  }
  EXPECT_FALSE(Run(Ask("What is the capital of France?")).ok());
  EXPECT_EQ(devices_.calls().size(), 3u);
}

TEST_F(RequestRunnerTest, AnAbandonedRequestStopsAndIsChargedForTheOutputProducedUntilThen) {
  AddDevice("a", "m", "llama");
  devices_.Set("a:1", {.chunks = {" Paris is", " the capital"}, .wait_for_cancel = true});
  Cancellation cancel;
  // Cancel as soon as output arrives, from the event sink, as a disconnecting client would.
  auto response = runner_->Run(Ask("What is the capital of France?"), absl::InfiniteFuture(),
                               [&](const v1::CompleteEvent& e) {
                                 if (e.has_output()) cancel.Cancel();
                               },
                               &cancel);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(response.status().message(), HasSubstr("produced until then"));
  // The device had sent both chunks when the attempt stopped: it is paid for them, and the
  // client pays exactly that.
  auto records = ledger_->ListRecords({});
  ASSERT_EQ(records->size(), 1u);
  const v1::ContributionRecord& r = (*records)[0];
  EXPECT_EQ(r.device_id(), "a");
  EXPECT_EQ(r.token_count(), CountTokens(" Paris is the capital"));
  EXPECT_GT(r.credits_micro(), 0);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted - r.credits_micro());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), kGranted - r.credits_micro())
      << "the reservation is consumed, not left behind";
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_F(RequestRunnerTest, ARequestAbandonedBeforeAnyOutputChargesNothingAndReleasesItsHold) {
  AddDevice("a", "m", "llama");
  devices_.Set("a:1", {.chunks = {}, .wait_for_cancel = true});
  Cancellation cancel;
  absl::Status status;
  std::thread client([&] {
    status = runner_->Run(Ask("What is the capital of France?"), absl::InfiniteFuture(),
                          nullptr, &cancel)
                 .status();
  });
  ASSERT_TRUE(loom::testing::WaitFor([&] { return devices_.calls().size() == 1; }, absl::Seconds(10)));
  cancel.Cancel();
  client.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(status.message(), HasSubstr("nothing was charged"));
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), kGranted);
}

TEST_F(RequestRunnerTest, BadRequestsAreRefusedBeforeAnyDeviceWorks) {
  AddDevice("a", "m", "llama");
  v1::CompleteRequest empty;
  EXPECT_EQ(Run(empty).status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_role = Ask("What is the capital of France?");
  bad_role.mutable_messages(0)->set_role("robot");
  EXPECT_THAT(Run(bad_role).status().message(), HasSubstr("role"));
  auto big = Ask(std::string(300 * 1024, 'x'));
  EXPECT_EQ(Run(big).status().code(), absl::StatusCode::kInvalidArgument);
  auto tokens = Ask("What is the capital of France?");
  tokens.set_max_tokens(-1);
  EXPECT_EQ(Run(tokens).status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_mode = Ask("What is the capital of France?");
  bad_mode.set_mode(static_cast<v1::PlanKind>(42));
  EXPECT_EQ(Run(bad_mode).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(devices_.calls().empty());
}

TEST_F(RequestRunnerTest, ARequestIdSentAgainGetsItsFirstAnswerWithoutRunningOrChargingAgain) {
  AddDevice("a", "m", "llama");
  auto r = Ask("What is the capital of France?");
  r.set_request_id("req-fixed");
  auto first = Run(r);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->replayed());
  const size_t calls = devices_.calls().size();
  auto second = Run(r);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->replayed());
  EXPECT_EQ(second->request_id(), "req-fixed");
  EXPECT_EQ(second->output(), first->output());
  EXPECT_EQ(second->cost_micro(), first->cost_micro());
  EXPECT_EQ(second->settlement_id(), first->settlement_id());
  EXPECT_EQ(devices_.calls().size(), calls) << "nothing ran twice";
  auto records = ledger_->ListRecords({});
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].request_id(), "client:alice/req-fixed") << "scoped to its client";
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted - first->cost_micro());
}

TEST_F(RequestRunnerTest, AnswersPastTheirRetentionAreGoneButTheIdStaysSpent) {
  AddDevice("a", "m", "llama");
  ledger_ = *SqliteLedger::Open({.path = ":memory:", .clock = &clock_,
                                 .answer_retention = absl::Minutes(10)});
  ASSERT_TRUE(ledger_->Grant(ClientAccount("alice"), kGranted, "g").ok());
  RequestRunner runner({}, &registry_, &selector_, &devices_, ledger_.get(), &clock_);
  auto r = Ask("What is the capital of France?");
  r.set_client_id("alice");
  r.set_request_id("req-old");
  ASSERT_TRUE(runner.Run(r, absl::InfiniteFuture(), nullptr, nullptr).ok());
  clock_.Advance(absl::Minutes(11));
  auto again = runner.Run(r, absl::InfiniteFuture(), nullptr, nullptr);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("no longer kept"));
  EXPECT_EQ(ledger_->ListRecords({})->size(), 1u) << "never run again";
}

TEST_F(RequestRunnerTest, ConcurrentDuplicatesRunOnceAndAllGetTheAnswer) {
  AddDevice("a", "m", "llama");
  // The device holds the first call until every duplicate has arrived and is waiting.
  absl::Notification gate;
  FakeDeviceClient::Script held;
  held.chunks = {"Lima."};
  held.gate = &gate;
  devices_.Set("a:1", held);
  auto r = Ask("What is the capital of Peru?");
  r.set_request_id("dup-1");
  constexpr int kDuplicates = 8;
  std::vector<absl::StatusOr<v1::CompleteResponse>> results(kDuplicates, absl::UnknownError(""));
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < kDuplicates; ++i) {
      threads.emplace_back([&, i] { results[i] = Run(r); });
    }
    EXPECT_TRUE(loom::testing::WaitFor([&] { return runner_->DuplicatesWaiting() == kDuplicates - 1; },
                                 absl::Seconds(10)));
    gate.Notify();
    for (auto& t : threads) t.join();
  }
  int replayed = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->output(), results[0]->output());
    replayed += result->replayed();
  }
  EXPECT_EQ(replayed, kDuplicates - 1);
  EXPECT_EQ(devices_.calls().size(), 1u) << "the device ran once";
  EXPECT_EQ(ledger_->ListRecords({})->size(), 1u);
}

TEST_F(RequestRunnerTest, ADuplicateWhileTheFirstRunsElsewhereIsToldToRetry) {
  AddDevice("a", "m", "llama");
  // Another coordinator on the same ledger holds the id (its reservation is live).
  ASSERT_TRUE(ledger_->Reserve("client:alice/elsewhere", ClientAccount("alice"), 1,
                               absl::Minutes(5)).ok());
  auto r = Ask("What is the capital of Peru?");
  r.set_request_id("elsewhere");
  auto response = Run(r);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(response.status().message(), HasSubstr("in progress"));
  EXPECT_TRUE(devices_.calls().empty());
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(RequestRunnerTest, UnpinnedPassthroughGoesToTheBestFamilyForTheCategory) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  auto response = Run(Ask("Implement binary search in C."));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->plan().kind(), v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(response->plan().categories(0).category(), v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(response->contributions(0).device_id(), "q");
}

TEST_F(RequestRunnerTest, CompiledRequestRunsTheWholePipelineAndPaysEveryRole) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  AddDevice("m", "mistral-7b", "mistral");
  devices_.Set("q:1", {.chunks = {" fn total() {}"}});
  devices_.Set("l:1", {.chunks = {" Rust has ownership."}});
  std::vector<v1::CompleteEvent> events;
  auto response = Run(Ask("Translate this Python code to Rust and explain the key differences "
                          "between the two implementations."),
                      &events);
  ASSERT_TRUE(response.ok()) << response.status();
  const v1::CompilationPlan& plan = response->plan();
  EXPECT_EQ(plan.kind(), v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(plan.sub_tasks_size(), 2);
  EXPECT_EQ(plan.sub_tasks(1).depends_on(0), plan.sub_tasks(0).id());
  ASSERT_EQ(response->results_size(), 2);
  EXPECT_EQ(response->results(0).device_id(), "q");
  EXPECT_EQ(response->results(1).device_id(), "l");
  EXPECT_THAT(response->results(1).input(), HasSubstr("fn total() {}"));
  // execute x2 + synthesize; weights sum to 1; the client pays exactly the records.
  ASSERT_EQ(response->contributions_size(), 3);
  double weights = 0;
  int64_t credits = 0;
  std::set<v1::ContributionRole> roles;
  for (const auto& c : response->contributions()) {
    weights += c.weight();
    credits += c.credits_micro();
    roles.insert(c.role());
  }
  EXPECT_NEAR(weights, 1.0, 1e-9);
  EXPECT_EQ(roles, (std::set<v1::ContributionRole>{v1::CONTRIBUTION_ROLE_EXECUTE,
                                                   v1::CONTRIBUTION_ROLE_SYNTHESIZE}));
  EXPECT_EQ(response->cost_micro(), credits);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted - credits);
  EXPECT_EQ(ledger_->ListRecords({.request_id = response->request_id()})->size(), 3u);
  // The stream: plan first, final last, answer text only from the synthesis.
  EXPECT_TRUE(events.front().has_plan());
  EXPECT_TRUE(events.back().has_final());
  std::string answer;
  for (const auto& e : events) {
    if (e.has_output() && e.output().answer()) answer += e.output().text();
  }
  EXPECT_EQ(answer, response->output());
}

// A follow-up in a conversation means nothing without the turns before it: every part of a
// compiled plan, and the synthesis, is sent them before its own prompt.
TEST_F(RequestRunnerTest, EveryPartOfACompiledFollowUpIsSentTheConversationBeforeIt) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  v1::CompleteRequest r;
  r.set_client_id("alice");
  auto add = [&](const std::string& role, const std::string& text) {
    auto* m = r.add_messages();
    m->set_role(role);
    m->set_content(text);
  };
  add("system", "Be brief.");
  add("user", "Here is my script: def total(xs): return sum(xs)");
  add("assistant", "It adds up a list.");
  add("user", "Translate this Python code to Rust and explain the key differences between the two "
              "implementations.");
  add("system", "Answer in English.");  // a system message after the ask still applies
  auto response = Run(r);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->plan().kind(), v1::PLAN_KIND_COMPILED);
  const std::vector<std::string> expected = {"system:Be brief.",
                                             "user:Here is my script: def total(xs): return sum(xs)",
                                             "assistant:It adds up a list.", "system:Answer in English."};
  int parts = 0;
  for (const DeviceCall& call : devices_.calls()) {
    const auto& messages = call.request.messages();
    ASSERT_EQ(messages.size(), expected.size() + 1) << call.request.sub_task_id();
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(messages[i].role() + ":" + messages[i].content(), expected[i]) << call.request.sub_task_id();
    }
    EXPECT_EQ(messages.rbegin()->role(), "user");  // then its own prompt
    EXPECT_NE(messages.rbegin()->content(), r.messages(1).content());
    ++parts;
  }
  EXPECT_EQ(parts, 3) << "two sub-tasks and the synthesis";
}

TEST(ContextMessagesTest, TheTurnsBeforeTheAskAndSystemMessagesAfterIt) {
  v1::CompleteRequest r;
  for (const char* role : {"system", "user", "assistant", "user", "assistant", "system"}) {
    r.add_messages()->set_role(role);
  }
  std::vector<std::string> roles;
  for (const auto& m : ContextMessages(r)) roles.push_back(m.role());
  // The ask is the second user message; the assistant's prefill after it is not context.
  EXPECT_EQ(roles, (std::vector<std::string>{"system", "user", "assistant", "system"}));
  EXPECT_TRUE(ContextMessages(v1::CompleteRequest()).empty());
  EXPECT_EQ(LastUserMessage(v1::CompleteRequest()), "");
}

TEST_F(RequestRunnerTest, SubTaskFailingEverywhereFailsTheRequestAndChargesNothing) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("q:1", {.status = absl::UnavailableError("down")});
  devices_.Set("l:1", {.status = absl::UnavailableError("down")});
  auto response = Run(Ask("Write a poem about spring. Then translate it into French."));
  ASSERT_FALSE(response.ok());
  EXPECT_THAT(response.status().message(), HasSubstr("sub-task"));
  EXPECT_THAT(response.status().message(), HasSubstr("creative: Write a poem about spring"));
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted);
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), kGranted) << "reservation released";
}

TEST_F(RequestRunnerTest, CompeteCreditsEveryCandidateAndMarksTheWinner) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  AddDevice("m", "mistral-7b", "mistral");
  auto r = Ask("What is the capital of France?");
  r.set_mode(v1::PLAN_KIND_COMPETE);
  auto response = Run(r);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->plan().kind(), v1::PLAN_KIND_COMPETE);
  ASSERT_EQ(response->compete().candidates_size(), 3);
  int winners = 0;
  for (const auto& c : response->compete().candidates()) winners += c.winner();
  EXPECT_EQ(winners, 1);
  EXPECT_FALSE(response->compete().reason().empty());
  EXPECT_EQ(response->contributions_size(), 3);
  for (const auto& c : response->contributions()) {
    EXPECT_EQ(c.role(), v1::CONTRIBUTION_ROLE_COMPETE);
  }
}

TEST_F(RequestRunnerTest, ACompeteVerdictTeachesTheOutcomeModel) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  OutcomeModel outcomes;
  RunnerOptions options;
  options.outcomes = &outcomes;
  runner_ = std::make_unique<RequestRunner>(options, &registry_, &selector_, &devices_,
                                            ledger_.get(), &clock_);
  auto r = Ask("What is the capital of France?");
  r.set_mode(v1::PLAN_KIND_COMPETE);
  auto response = Run(r);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->compete().candidates_size(), 2);
  const v1::TaskCategory category = response->plan().categories(0).category();
  const auto counts = outcomes.Counts();
  ASSERT_EQ(counts.size(), 2u);
  for (const auto& c : response->compete().candidates()) {
    const OutcomeCounts& got = counts.at({c.model(), category});
    // By agreement (no judge): half weight for the winner, a quarter against the other.
    EXPECT_DOUBLE_EQ(c.winner() ? got.good : got.bad, c.winner() ? 0.5 : 0.25) << c.model();
    EXPECT_DOUBLE_EQ(c.winner() ? got.bad : got.good, 0) << c.model();
  }
}

TEST_F(RequestRunnerTest, ARouterVerdictIsReservedForUsedAndPaidAsARouteRecord) {
  // A classifier unsure of everything, a real planning model and a simulated answerer.
  auto unsure = UnsureModel();
  AddDevice("planner", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("planner:1", {.chunks = {R"({"category": "creative", "multi_part": false})"}});
  RunnerOptions options;
  options.analyzer.model = unsure.get();
  options.router.enabled = true;
  options.router.model = "phi-3-mini";
  runner_ = std::make_unique<RequestRunner>(options, &registry_, &selector_, &devices_,
                                            ledger_.get(), &clock_);
  auto response = Run(Ask("Tell me about the painting in the hallway."));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->plan().categories(0).category(), v1::TASK_CATEGORY_CREATIVE);
  std::string reasons;
  for (const auto& r : response->plan().reasons()) reasons += r + "\n";
  EXPECT_THAT(reasons, HasSubstr("router model phi-3-mini: creative"));
  int routes = 0;
  for (const auto& c : response->contributions()) {
    if (c.role() == v1::CONTRIBUTION_ROLE_ROUTE) {
      ++routes;
      EXPECT_EQ(c.device_id(), "planner");
      EXPECT_GT(c.credits_micro(), 0);
    }
  }
  EXPECT_EQ(routes, 1);
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), *ledger_->Balance(ClientAccount("alice")))
      << "nothing left held after settlement";

  // A client who cannot afford the whole mesh is not routed: its bound covers the plan alone.
  AddDevice("dear", "huge-70000b", "llama", 0, /*parameters_b=*/70000);  // 70 credits per 1k
  ASSERT_TRUE(ledger_->Grant(ClientAccount("bob"), kMicroPerCredit, "bob").ok());
  auto poor = Ask("Tell me about the painting in the hallway.");
  poor.set_client_id("bob");
  const size_t calls = devices_.calls().size();
  auto tight = Run(poor);
  ASSERT_TRUE(tight.ok()) << tight.status();
  reasons.clear();
  for (const auto& r : tight->plan().reasons()) reasons += r + "\n";
  EXPECT_THAT(reasons, HasSubstr("router not asked: the client's credits do not cover"));
  for (const auto& c : tight->contributions()) EXPECT_NE(c.role(), v1::CONTRIBUTION_ROLE_ROUTE);
  EXPECT_EQ(devices_.calls().size(), calls + 1) << "the answer only";
}

TEST_F(RequestRunnerTest, ExplainShowsThePlanWithoutRunningAnything) {
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  AddDevice("l", "llama-3.1-8b", "llama");
  auto plan = runner_->Explain(Ask("Translate this Python code to Rust and explain the key "
                                   "differences between the two implementations."));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->kind(), v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(plan->assignments_size(), 2);
  EXPECT_EQ(plan->assignments(0).device_id(), "q");
  EXPECT_EQ(plan->assignments(1).device_id(), "l");
  EXPECT_THAT(plan->assignments(0).reason(), HasSubstr("then"));
  EXPECT_FALSE(plan->synthesis_prompt().empty());
  EXPECT_TRUE(devices_.calls().empty());
}

TEST_F(RequestRunnerTest, OverheadExcludesTheTimeSpentWaitingOnDevices) {
  AddDevice("a", "m", "llama");
  devices_.set_clock(&clock_);
  devices_.Set("a:1", {.takes = absl::Milliseconds(50)});  // the device works for 50 ms
  auto response = Run(Ask("What is the capital of France?"));
  ASSERT_TRUE(response.ok()) << response.status();
  // The simulated clock moved only while the device worked: none of it is the coordinator's.
  EXPECT_LT(response->coordinator_overhead_us(), 50'000);
  EXPECT_EQ(response->attempts(0).latency_ms(), 50);
  // The timings say where the time went: all of it on the device, in the one call.
  const v1::Timings& t = response->timings();
  EXPECT_EQ(t.device_wait_us(), 50'000);
  EXPECT_EQ(t.execute_us(), 50'000);
  EXPECT_EQ(t.total_us(), 50'000);
  EXPECT_EQ(response->coordinator_overhead_us(),
            t.total_us() - t.device_wait_us() - t.reserve_us() - t.settle_us());
}

TEST_F(RequestRunnerTest, OverheadCountsFromArrivalSoQueueingIsTheCoordinatorsTime) {
  AddDevice("a", "m", "llama");
  const absl::Time arrived = clock_.Now();
  clock_.Advance(absl::Milliseconds(7));  // the request waited 7 ms for a request thread
  Cancellation cancel;
  auto response = runner_->Run(Ask("What is the capital of France?"), absl::InfiniteFuture(),
                               [](const v1::CompleteEvent&) {}, &cancel, arrived);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->timings().queued_us(), 7'000);
  EXPECT_EQ(response->timings().total_us(), 7'000);
  EXPECT_EQ(response->coordinator_overhead_us(), 7'000);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(RequestRunnerTest, ClientWithoutEnoughCreditsIsRefusedBeforeAnyDeviceWorks) {
  AddDevice("a", "m", "llama");
  auto r = Ask("What is the capital of France?");
  r.set_client_id("broke");  // as the front doors set it from the API key
  auto response = Run(r);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(response.status().message(), HasSubstr("insufficient credits"));
  EXPECT_TRUE(devices_.calls().empty());
}

// A ledger whose settlements fail, to show what client and providers see then.
class FailingSettleLedger : public LedgerStore {
 public:
  explicit FailingSettleLedger(SqliteLedger* real) : real_(real) {}
  absl::Status Reserve(const std::string& id, const std::string& account, int64_t amount,
                       absl::Duration ttl) override {
    return real_->Reserve(id, account, amount, ttl);
  }
  absl::Status Release(const std::string& id) override { return real_->Release(id); }
  absl::StatusOr<Settlement> Settle(const SettlementRequest&) override {
    return absl::UnavailableError("disk full");
  }
  absl::StatusOr<std::vector<v1::ContributionRecord>> ListRecords(const RecordFilter& f) override {
    return real_->ListRecords(f);
  }
  absl::StatusOr<std::string> Authenticate(const std::string& key) override {
    return real_->Authenticate(key);
  }

 private:
  SqliteLedger* real_;
};

TEST_F(RequestRunnerTest, FailedSettlementWithholdsTheAnswerChargesNothingAndReleasesTheHold) {
  AddDevice("a", "m", "llama");
  FailingSettleLedger failing(ledger_.get());
  RequestRunner runner({}, &registry_, &selector_, &devices_, &failing, &clock_);
  Cancellation cancel;
  auto response = runner.Run(Ask("What is the capital of France?"), absl::InfiniteFuture(),
                             nullptr, &cancel);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(response.status().message(), HasSubstr("could not be settled"));
  EXPECT_THAT(response.status().message(), HasSubstr("nothing was charged"));
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted);
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), kGranted);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("prov-a")), 0);
}

TEST_F(RequestRunnerTest, ALyingDeviceIsPaidOnlyForWhatArrivedAndIsFlagged) {
  AddDevice("a", "llama-3.1-8b", "llama");
  devices_.Set("a:1", {.chunks = {" hello", " world"}, .claimed_tokens = 500});
  auto response = Run(Ask("tell me a story"));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->contributions_size(), 1);
  EXPECT_EQ(response->contributions(0).token_count(), 2);  // counted, not claimed
  EXPECT_EQ(registry_.Snapshot()[0].usage_overclaims(), 1);
  // Within the tolerance nothing is flagged.
  devices_.Set("a:1", {.chunks = {" hello", " world"}, .claimed_tokens = 5});
  ASSERT_TRUE(Run(Ask("tell me a story")).ok());
  EXPECT_EQ(registry_.Snapshot()[0].usage_overclaims(), 1);
}

TEST_F(RequestRunnerTest, ACallThatFinishesAsItsClientLeavesIsPaidForWhatItSent) {
  AddDevice("a", "llama-3.1-8b", "llama");
  devices_.Set("a:1", {.chunks = {" late"}, .claimed_tokens = 500, .finish_after_cancel = true});
  Cancellation cancel;
  auto response = runner_->Run(Ask("What is the capital of France?"), absl::InfiniteFuture(),
                               [&](const v1::CompleteEvent& e) {
                                 if (e.has_output()) cancel.Cancel();
                               },
                               &cancel);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled);
  auto records = ledger_->ListRecords({});
  ASSERT_EQ(records->size(), 1u);
  // Paid for what the coordinator received, not for the 500 tokens claimed.
  EXPECT_EQ((*records)[0].token_count(), CountTokens(" late"));
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), kGranted - (*records)[0].credits_micro());
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The report: at 250 bps, 10 of 89 admitted requests ran and were then refused at settlement
// (work done, nobody paid), because the reservation left the fee out. It includes it now.
TEST_F(RequestRunnerTest, TheReservationIncludesTheFeeSoAnAdmittedRequestCanSettle) {
  auto ledger = *SqliteLedger::Open({.path = ":memory:", .fee_bps = 10000, .clock = &clock_});
  RequestRunner runner(RunnerOptions{}, &registry_, &selector_, &devices_, ledger.get(), &clock_);
  AddDevice("a", "llama-3.1-8b", "llama");  // 8B: 8,000 micro-credits per 1k tokens
  devices_.Set("a:1", {.chunks = std::vector<std::string>(1000, " w")});  // the whole bound
  auto ask = Ask("Tell me a long story.");
  ask.set_max_tokens(1000);  // bound 8,000; with the 100% fee 16,000
  ASSERT_TRUE(ledger->Grant(ClientAccount("bob"), 12000, "setup-bob").ok());
  ask.set_client_id("bob");
  Cancellation cancel;
  auto refused = runner.Run(ask, absl::InfiniteFuture(), nullptr, &cancel);
  EXPECT_TRUE(IsInsufficientCredits(refused.status())) << refused.status();
  EXPECT_TRUE(devices_.calls().empty()) << "refused before any device worked";
  ASSERT_TRUE(ledger->Grant(ClientAccount("carol"), 16000, "setup-carol").ok());
  ask.set_client_id("carol");
  auto paid = runner.Run(ask, absl::InfiniteFuture(), nullptr, &cancel);
  ASSERT_TRUE(paid.ok()) << paid.status();
  EXPECT_EQ(paid->cost_micro(), 16000);
  EXPECT_EQ(*ledger->Balance(ClientAccount("carol")), 0);
}

TEST(SqliteLedgerFeeTest, TheFeeNeverOverflows) {
  auto ledger = *SqliteLedger::Open({.path = ":memory:", .fee_bps = 250});
  EXPECT_EQ(ledger->FeeFor(10000), 250);
  EXPECT_EQ(ledger->FeeFor(399), 9);
  EXPECT_EQ(ledger->FeeFor(INT64_MAX), INT64_MAX / 10000 * 250 + INT64_MAX % 10000 * 250 / 10000);
}

}  // namespace
}  // namespace loom
