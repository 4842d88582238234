#include "worker/sim_provider.h"

#include <thread>

#include "common/tokens.h"
#include "nlohmann/json.hpp"
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

// On a simulated clock the device's pace and the deadline are in simulated time: a first token
// due in 10 s misses a 5 s deadline as soon as the clock passes it, with no real wait.
TEST(SimProviderTest, ItsPaceAndDeadlineFollowTheClock) {
  SimulatedClock clock;
  v1::SimBackend b;
  b.set_time_to_first_token_ms(10'000);
  SimProvider sim({.model = "llama-3.1-8b", .device_id = "dev-a", .backend = b, .clock = &clock});
  GenerateRequest r = Prompt("hello");
  r.deadline = clock.Now() + absl::Seconds(5);
  absl::StatusOr<v1::InferChunk> usage;
  std::string text;
  std::thread generate([&] { text = Collect(sim, r, &usage); });
  clock.Advance(absl::Seconds(6));
  generate.join();
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kDeadlineExceeded) << usage.status();
  EXPECT_EQ(text, "");
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

namespace loom {
namespace {

using json = nlohmann::json;

const char kWeatherTools[] =
    R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1},
                       "unit": {"enum": ["c", "f"]}, "note": {"type": "string"}},
        "required": ["city", "days", "unit"]}}}])";

TEST(SimProviderToolsTest, CallsAToolThePromptNamesWithArgumentsOfItsSchema) {
  SimProvider sim = Sim({});
  GenerateRequest r = Prompt("What is the weather in Lima? use get weather");
  r.structure.set_tools_json(kWeatherTools);
  absl::StatusOr<v1::InferChunk> last;
  EXPECT_EQ(Collect(sim, r, &last), "");
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->finish_reason(), "tool_calls");
  json calls = json::parse(last->tool_calls_json());
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  json args = json::parse(calls[0]["function"]["arguments"].get<std::string>());
  EXPECT_TRUE(args["city"].is_string());
  EXPECT_EQ(args["days"], 1);
  EXPECT_EQ(args["unit"], "c");
  EXPECT_FALSE(args.contains("note")) << "only required properties";
  EXPECT_EQ(last->usage().completion_tokens(), CountTokens(last->tool_calls_json()));
}

TEST(SimProviderToolsTest, AutoWithoutAMentionAnswersInTextAndNoneNeverCalls) {
  SimProvider sim = Sim({});
  GenerateRequest r = Prompt("Tell me a joke.");
  r.structure.set_tools_json(kWeatherTools);
  absl::StatusOr<v1::InferChunk> last;
  EXPECT_FALSE(Collect(sim, r, &last).empty());
  EXPECT_TRUE(last->tool_calls_json().empty());
  r = Prompt("get_weather for Lima");
  r.structure.set_tools_json(kWeatherTools);
  r.structure.set_tool_choice_json(R"("none")");
  EXPECT_FALSE(Collect(sim, r, &last).empty());
  EXPECT_TRUE(last->tool_calls_json().empty());
  r.structure.set_tool_choice_json(R"({"type": "function", "function": {"name": "get_weather"}})");
  Collect(sim, r, &last);
  EXPECT_EQ(last->finish_reason(), "tool_calls");
}

TEST(SimProviderToolsTest, TheTurnAfterAToolCallAnswersFromItsResult) {
  SimProvider sim = Sim({});
  GenerateRequest r = Prompt("What is the weather in Lima?");
  r.structure.set_tools_json(kWeatherTools);
  v1::ChatMessage result;
  result.set_role("tool");
  result.set_tool_call_id("call_1");
  result.set_content("18 C and cloudy");
  r.messages.push_back(result);
  absl::StatusOr<v1::InferChunk> last;
  EXPECT_THAT(Collect(sim, r, &last), HasSubstr("18 C and cloudy"));
  EXPECT_EQ(last->finish_reason(), "stop");
}

TEST(SimProviderToolsTest, JsonOutputIsValidAndOfTheSchemasShapeWhateverTheLimit) {
  SimProvider sim = Sim({});
  GenerateRequest r = Prompt("Name a city.", /*max_tokens=*/3);
  r.structure.set_response_format_json(R"({"type": "json_schema", "json_schema": {"name": "c",
      "schema": {"type": "object", "properties": {"city": {"$ref": "#/$defs/city"}},
                 "required": ["city"],
                 "$defs": {"city": {"type": "object", "properties": {
                     "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                     "founded": {"type": "string", "format": "date"}}}}}}})");
  absl::StatusOr<v1::InferChunk> last;
  json value = json::parse(Collect(sim, r, &last));
  EXPECT_TRUE(value["city"]["name"].is_string());
  EXPECT_TRUE(value["city"]["tags"].is_array());
  EXPECT_EQ(value["city"]["founded"], "2026-01-01");
  r.structure.set_response_format_json(R"({"type": "json_object"})");
  json object = json::parse(Collect(sim, r, &last));
  EXPECT_TRUE(object["answer"].is_string());
}

}  // namespace
}  // namespace loom
