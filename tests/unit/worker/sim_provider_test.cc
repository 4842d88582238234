#include "worker/sim_provider.h"

#include <thread>

#include "common/tokens.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

GenerateRequest Prompt(const std::string& text, int64_t max_tokens = 0) {
  GenerateRequest r;
  v1::ChatMessage m;
  m.set_role("user");
  m.set_content(text);
  r.messages.push_back(m);
  r.max_tokens = max_tokens;
  return r;
}

SimProvider Sim(v1::SimBackend backend, std::function<void()> exit_process = nullptr) {
  return SimProvider({.model = "llama-3.1-8b", .device_id = "dev-a", .backend = backend,
                      .exit_process = std::move(exit_process)});
}

std::string Collect(SimProvider& sim, const GenerateRequest& r, absl::StatusOr<v1::InferChunk>* usage,
                    Cancellation* cancel = nullptr) {
  Cancellation local;
  std::string text;
  *usage = sim.Generate(r, [&](std::string_view t) { text.append(t); return true; },
                        cancel ? *cancel : local);
  return text;
}

TEST(SimProviderTest, DeterministicLabelledTextOfTheConfiguredLength) {
  v1::SimBackend b;
  b.set_output_tokens(40);
  SimProvider sim = Sim(b);
  absl::StatusOr<v1::InferChunk> usage;
  std::string a = Collect(sim, Prompt("explain rust ownership"), &usage);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_THAT(a, StartsWith(" [simulated] llama-3.1-8b on dev-a re: explain rust ownership"));
  EXPECT_EQ(usage->usage().completion_tokens(), 40);
  EXPECT_EQ(CountTokens(a), 40);
  EXPECT_EQ(usage->usage().prompt_tokens(), 4);  // "ownership" is two pieces
  std::string b2 = Collect(sim, Prompt("explain rust ownership"), &usage);
  EXPECT_EQ(a, b2);
  std::string other = Collect(sim, Prompt("something else entirely"), &usage);
  EXPECT_NE(a, other);
}

TEST(SimProviderTest, MaxTokensCapsTheAnswer) {
  SimProvider sim = Sim({});
  absl::StatusOr<v1::InferChunk> usage;
  std::string text = Collect(sim, Prompt("hi", 5), &usage);
  ASSERT_TRUE(usage.ok());
  EXPECT_LE(usage->usage().completion_tokens(), 5);
  EXPECT_EQ(CountTokens(text), usage->usage().completion_tokens());
  EXPECT_EQ(usage->finish_reason(), "length");
  Collect(sim, Prompt("hi", 0), &usage);
  EXPECT_EQ(usage->finish_reason(), "stop");
}

TEST(SimProviderTest, StopSequencesEndTheAnswerBeforeThem) {
  SimProvider sim = Sim({});
  absl::StatusOr<v1::InferChunk> usage;
  GenerateRequest r = Prompt("tell me about the ocean", 0);
  const std::string full = Collect(sim, r, &usage);
  ASSERT_THAT(full, ::testing::HasSubstr(" re:"));
  r.sampling.add_stop("never appears");
  r.sampling.add_stop(" re:");
  const std::string cut = Collect(sim, r, &usage);
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(cut, full.substr(0, full.find(" re:")));
  EXPECT_EQ(usage->finish_reason(), "stop");
  EXPECT_EQ(usage->usage().completion_tokens(), CountTokens(cut));
}

TEST(SimProviderTest, FailFaultReturnsUnavailableAfterSomeTokens) {
  v1::SimBackend b;
  b.mutable_fault()->set_kind(v1::SimFault::KIND_FAIL);
  b.mutable_fault()->set_after_tokens(5);
  SimProvider sim = Sim(b);
  absl::StatusOr<v1::InferChunk> usage;
  std::string text = Collect(sim, Prompt("hello there"), &usage);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(CountTokens(text), 5);
  EXPECT_LT(CountTokens(text), 64);
}

TEST(SimProviderTest, HangFaultEndsAtTheDeadline) {
  v1::SimBackend b;
  b.mutable_fault()->set_kind(v1::SimFault::KIND_HANG);
  SimProvider sim = Sim(b);
  GenerateRequest r = Prompt("hello");
  r.deadline = absl::Now();  // already due: the hang returns at once
  absl::StatusOr<v1::InferChunk> usage;
  Collect(sim, r, &usage);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(SimProviderTest, HangFaultEndsOnCancellation) {
  v1::SimBackend b;
  b.mutable_fault()->set_kind(v1::SimFault::KIND_HANG);
  SimProvider sim = Sim(b);
  Cancellation cancel;
  std::thread canceller([&] { cancel.Cancel(); });
  absl::StatusOr<v1::InferChunk> usage;
  Collect(sim, Prompt("hello"), &usage, &cancel);
  canceller.join();
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kCancelled);
}

TEST(SimProviderTest, ExitFaultCallsTheExitHook) {
  v1::SimBackend b;
  b.mutable_fault()->set_kind(v1::SimFault::KIND_EXIT);
  b.mutable_fault()->set_after_tokens(2);
  bool exited = false;
  SimProvider sim = Sim(b, [&] { exited = true; });
  absl::StatusOr<v1::InferChunk> usage;
  Collect(sim, Prompt("hello"), &usage);
  EXPECT_TRUE(exited);
  EXPECT_FALSE(usage.ok());
}

TEST(SimProviderTest, SinkRefusalStopsGeneration) {
  SimProvider sim = Sim({});
  Cancellation cancel;
  int chunks = 0;
  auto usage = sim.Generate(Prompt("hello"), [&](std::string_view) { return ++chunks < 3; }, cancel);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(chunks, 3);
}

TEST(SimProviderTest, EmptyConversationIsInvalid) {
  SimProvider sim = Sim({});
  Cancellation cancel;
  auto usage = sim.Generate({}, [](std::string_view) { return true; }, cancel);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom
