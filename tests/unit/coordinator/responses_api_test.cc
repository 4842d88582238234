// The Responses API codec: what it takes from a request (input forms, instructions, limits,
// sampling), what it refuses by name, and the response and stream shapes SDKs parse.
#include "coordinator/front/responses_api.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

absl::Status Parse(const std::string& body, ResponsesRequest* out, bool drop = false) {
  return ParseResponsesRequest(body, drop, out);
}

TEST(ResponsesApiTest, ReadsAStringInputWithInstructionsLimitsAndSampling) {
  ResponsesRequest r;
  ASSERT_TRUE(Parse(R"({"model": "llama-3.1-8b", "instructions": "Be brief.", "input": "Hi",
                        "max_output_tokens": 20, "temperature": 0.5, "stream": true,
                        "store": false, "metadata": {"a": "b"}})", &r).ok());
  EXPECT_EQ(r.model, "llama-3.1-8b");
  EXPECT_EQ(r.request.model(), "llama-3.1-8b");
  EXPECT_TRUE(r.stream);
  ASSERT_EQ(r.request.messages_size(), 2);
  EXPECT_EQ(r.request.messages(0).role(), "system");
  EXPECT_EQ(r.request.messages(0).content(), "Be brief.");
  EXPECT_EQ(r.request.messages(1).role(), "user");
  EXPECT_EQ(r.request.max_tokens(), 20);
  EXPECT_DOUBLE_EQ(r.request.sampling().temperature(), 0.5);
}

TEST(ResponsesApiTest, ReadsMessageItemsAndMapsDeveloperToSystem) {
  ResponsesRequest r;
  ASSERT_TRUE(Parse(R"({"model": "loom-auto", "input": [
      {"role": "developer", "content": "Rules."},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "A "},
                                                      {"type": "input_text", "text": "B"}]},
      {"role": "assistant", "content": [{"type": "output_text", "text": "C"}]}]})", &r).ok());
  EXPECT_TRUE(r.request.model().empty()) << "loom-auto is no pin";
  ASSERT_EQ(r.request.messages_size(), 3);
  EXPECT_EQ(r.request.messages(0).role(), "system");
  EXPECT_EQ(r.request.messages(1).content(), "A B");
  EXPECT_EQ(r.request.messages(2).role(), "assistant");
}

TEST(ResponsesApiTest, RefusesWhatWouldChangeTheAnswerByName) {
  for (const auto& [body, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"model": "m", "input": "x", "previous_response_id": "resp_1"})", "previous_response_id"},
           {R"({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})", "tools[0].type"},
           {R"({"model": "m", "input": "x", "tools": [{"type": "function"}]})", "tools[0].name"},
           {R"({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}})", "text"},
           {R"({"model": "m", "input": "x", "reasoning": {"effort": "low"}})", "reasoning"},
           {R"({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]})", "input[0].output"},
           {R"({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]})", "input[0].arguments"},
           {R"({"model": "m", "input": [{"type": "file_search_call"}]})", "file_search_call"},
           {R"({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]})", "input_image"},
           {R"({"model": "m", "input": "x", "max_output_tokens": -1})", "max_output_tokens"},
           {R"({"model": "m", "input": 5})", "input"},
           {R"({"model": "m"})", "input"},
           {R"({"input": "x"})", "model"},
           {R"(not json)", "JSON"}}) {
    ResponsesRequest r;
    absl::Status s = Parse(body, &r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(s.message(), HasSubstr(field)) << body;
  }
}

TEST(ResponsesApiTest, DropParamsDropsTheRefusableFieldsAndNamesThem) {
  ResponsesRequest r;
  ASSERT_TRUE(Parse(R"({"model": "m", "input": "x", "previous_response_id": "resp_1",
                        "reasoning": {"effort": "low"}})", &r, /*drop=*/true).ok());
  EXPECT_THAT(r.dropped, ::testing::ElementsAre("previous_response_id", "reasoning"));
}

TEST(ResponsesApiTest, AResponseCarriesItsTextUsageAndWhyItStopped) {
  json done = ResponseJson("resp_r1", 7, "m", "completed", "Lima.", 5, 2);
  EXPECT_EQ(done["object"], "response");
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "Lima.");
  EXPECT_EQ(done["output_text"], "Lima.");
  EXPECT_EQ(done["usage"]["total_tokens"], 7);
  EXPECT_TRUE(done["incomplete_details"].is_null());
  json cut = ResponseJson("resp_r1", 7, "m", "incomplete", "Once", 5, 2);
  EXPECT_EQ(cut["incomplete_details"]["reason"], "max_output_tokens");
}

TEST(ResponsesApiTest, AStreamIsNumberedEventsEndingInCompletedWithTheWholeText) {
  ResponsesStream stream("resp_r1", 7, "m");
  std::string all = stream.Start();
  all += stream.Delta("Li");
  all += stream.Delta("ma.");
  all += stream.Finish("stop", 5, 2, json{{"plan_kind", "passthrough"}});
  std::vector<std::string> types;
  int64_t expected_sequence = 0;
  for (absl::string_view event : absl::StrSplit(all, "\n\n", absl::SkipEmpty())) {
    std::vector<std::string> lines = absl::StrSplit(event, '\n');
    ASSERT_EQ(lines.size(), 2u) << event;
    json data = json::parse(lines[1].substr(6));
    EXPECT_EQ("event: " + data["type"].get<std::string>(), lines[0]);
    EXPECT_EQ(data["sequence_number"], expected_sequence++);
    types.push_back(data["type"]);
    if (data["type"] == "response.completed") {
      EXPECT_EQ(data["response"]["output_text"], "Lima.");
      EXPECT_EQ(data["response"]["loom"]["plan_kind"], "passthrough");
    }
  }
  EXPECT_THAT(types, ::testing::ElementsAre(
                         "response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta",
                         "response.output_text.delta", "response.output_text.done",
                         "response.content_part.done", "response.output_item.done",
                         "response.completed"));
  ResponsesStream cut("resp_r2", 7, "m");
  EXPECT_THAT(cut.Finish("length", 1, 1, nullptr), HasSubstr("event: response.incomplete"));
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// Function tools the way the openai SDK's responses.create and the AI SDK's default path send
// them: the tools become chat tools for the device, the call and its output become the
// assistant's tool call and the tool message, and the model's calls come back as items.
TEST(ResponsesApiTest, FunctionToolsCallsAndOutputsMapOntoChatToolsAndBack) {
  ResponsesRequest r;
  ASSERT_TRUE(ParseResponsesRequest(R"({"model": "m", "tool_choice": {"type": "function", "name": "get_weather"},
      "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": false}],
      "input": [{"role": "user", "content": "Weather in Lima?"},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Lima\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Cusco\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
                {"type": "function_call_output", "call_id": "call_2", "output": "12 C"}]})",
                                    false, &r).ok());
  json tools = json::parse(r.request.structure().tools_json());
  EXPECT_EQ(tools[0]["function"]["name"], "get_weather");
  EXPECT_EQ(tools[0]["function"]["parameters"]["properties"]["city"]["type"], "string");
  EXPECT_EQ(json::parse(r.request.structure().tool_choice_json())["function"]["name"], "get_weather");
  ASSERT_EQ(r.request.messages_size(), 4);
  EXPECT_EQ(r.request.messages(1).role(), "assistant");
  EXPECT_EQ(json::parse(r.request.messages(1).tool_calls_json()).size(), 2u) << "one turn, two calls";
  EXPECT_EQ(r.request.messages(2).role(), "tool");
  EXPECT_EQ(r.request.messages(2).tool_call_id(), "call_1");
  EXPECT_EQ(r.request.messages(3).content(), "12 C");

  const std::string calls =
      R"([{"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}])";
  json done = ResponseJson("resp_r1", 7, "m", "completed", "", 5, 2, calls);
  ASSERT_EQ(done["output"].size(), 1u) << "no empty message item";
  EXPECT_EQ(done["output"][0]["type"], "function_call");
  EXPECT_EQ(done["output"][0]["call_id"], "call_9");
  EXPECT_EQ(done["output"][0]["name"], "get_weather");

  ResponsesStream stream("resp_r1", 7, "m");
  std::string all = stream.Start() + stream.Finish("tool_calls", 5, 2, nullptr, calls);
  EXPECT_THAT(all, HasSubstr("response.function_call_arguments.done"));
  const size_t added = all.find("\"type\":\"function_call\"");
  EXPECT_NE(added, std::string::npos);
  EXPECT_LT(all.find("response.output_item.added", all.find("response.content_part.done")),
            all.find("response.completed"));
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The AI SDK (store on, its default) sends earlier output items back as item_reference: they
// are resolved from the cache, per client, for an hour; an unknown one says what to do.
TEST(ResponsesApiTest, ItemReferencesResolveFromRecentOutputsOfTheSameClient) {
  ResponseItemCache cache(/*max_items=*/3, absl::Hours(1));
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  const std::string calls =
      R"([{"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}])";
  cache.Put("alice", ResponseJson("resp_r1", 7, "m", "completed", "", 5, 2, calls), t0);
  const ItemResolver alice = [&](const std::string& id) { return cache.Get("alice", id, t0); };
  const std::string body = R"({"model": "m", "input": [{"role": "user", "content": "Weather?"},
      {"type": "item_reference", "id": "fc_call_9"},
      {"type": "function_call_output", "call_id": "call_9", "output": "18 C"}]})";
  ResponsesRequest r;
  ASSERT_TRUE(ParseResponsesRequest(body, false, &r, alice).ok());
  ASSERT_EQ(r.request.messages_size(), 3);
  EXPECT_THAT(r.request.messages(1).tool_calls_json(), HasSubstr("get_weather"));

  const ItemResolver bob = [&](const std::string& id) { return cache.Get("bob", id, t0); };
  ResponsesRequest other;
  absl::Status s = ParseResponsesRequest(body, false, &other, bob);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "another client's items are not bob's";
  EXPECT_THAT(s.message(), HasSubstr("store: false"));
  EXPECT_FALSE(cache.Get("alice", "fc_call_9", t0 + absl::Hours(2))) << "past the hour";
  for (int i = 0; i < 4; ++i) {
    cache.Put("alice", ResponseJson(absl::StrCat("resp_x", i), 7, "m", "completed", "hi", 1, 1), t0);
  }
  EXPECT_FALSE(cache.Get("alice", "fc_call_9", t0)) << "the oldest goes first past max_items";
}

}  // namespace
}  // namespace loom
