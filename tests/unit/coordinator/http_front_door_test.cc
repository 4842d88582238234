// ParseChatRequest: what the OpenAI-compatible door accepts and how it refuses the rest. Every
// refusal is a 400 naming the field; no input may throw (type confusion used to reach
// nlohmann's value() and end as a 500 with the exception's text in a header).
#include "coordinator/front/http_front_door.h"

#include "absl/strings/str_cat.h"
#include "common/openai_wire.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

struct Parsed {
  absl::Status status;
  v1::CompleteRequest request;
  bool stream = false, include_usage = false;
  std::string model;
};

Parsed Parse(const std::string& body) {
  Parsed p;
  p.status = ParseChatRequest(body, &p.request, &p.stream, &p.include_usage, &p.model);
  return p;
}

TEST(ParseChatRequestTest, ReadsAnOrdinaryRequest) {
  Parsed p = Parse(R"({"model": "loom-auto", "stream": true, "stream_options": {"include_usage": true},
                      "max_tokens": 40, "loom": {"mode": "compiled", "request_id": "r-1"},
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                                {"type": "text", "text": "there"}]}]})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_EQ(p.model, "loom-auto");
  EXPECT_TRUE(p.request.model().empty());  // loom-auto is no pin
  EXPECT_EQ(p.request.max_tokens(), 40);
  EXPECT_EQ(p.request.mode(), v1::PLAN_KIND_COMPILED);
  EXPECT_EQ(p.request.request_id(), "r-1");
  ASSERT_EQ(p.request.messages_size(), 2);
  EXPECT_EQ(p.request.messages(1).content(), "Hi there");
}

TEST(ParseChatRequestTest, NullsMeanAbsent) {
  Parsed p = Parse(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                      "stream": null, "max_tokens": null, "stream_options": null})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_FALSE(p.stream);
  EXPECT_EQ(p.request.model(), "m");
}

TEST(ParseChatRequestTest, WrongTypesAreRefusedByName) {
  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not a JSON object"},
      {"[1, 2]", "not a JSON object"},
      {R"({"messages": []})", "'model'"},
      {R"({"model": 5, )" + user + "}", "'model'"},
      {R"({"model": "m", "messages": {}})", "'messages'"},
      {R"({"model": "m", "messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"model": "m", "messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": 5}]}]})",
       "messages[0].content[0].type"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})",
       "messages[0].content[0].text"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:"}}]}]})",
       "image_url.url' must be an http(s) URL or a data:image"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "content[0].image_url' must be an object"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "max"}}]}]})",
       "image_url.detail"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})",
       "'input_audio' part"},
      {R"({"model": "m", "stream": "yes", )" + user + "}", "'stream'"},
      {R"({"model": "m", "stream_options": {"include_usage": "yes"}, )" + user + "}",
       "stream_options.include_usage"},
      {R"({"model": "m", "stream_options": 1, )" + user + "}", "'stream_options'"},
      {R"({"model": "m", "max_tokens": -1, )" + user + "}", "'max_tokens'"},
      {R"({"model": "m", "max_tokens": 1.5, )" + user + "}", "'max_tokens'"},
      {R"({"model": "m", "loom": {"mode": 5}, )" + user + "}", "loom.mode"},
      {R"({"model": "m", "loom": {"mode": "fastest"}, )" + user + "}", "loom.mode"},
      {R"({"model": "m", "loom": {"request_id": 7}, )" + user + "}", "loom.request_id"},
      {R"({"model": "m", "loom": [], )" + user + "}", "'loom'"},
      {"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"caf\xC3\"}]}",
       "not valid UTF-8"},
  };
  for (const auto& [body, field] : cases) {
    Parsed p = Parse(body);
    EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(p.status.message(), HasSubstr(field)) << body;
  }
}

TEST(ParseChatRequestTest, APolicyIsReadInCreditsAndCheckedByField) {
  Parsed p = Parse(R"({"model": "loom-auto", "messages": [{"role": "user", "content": "hi"}],
      "loom": {"policy": {"name": "loom-green", "max_price_per_1k": 0.002, "max_cost": 0.05,
               "min_tokens_per_s": 20, "max_ttft_ms": 800, "trust": "verified",
               "regions": ["eu-west"], "private_only": true,
               "weights": {"quality": 1, "carbon": 2}}}})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  const v1::Policy& policy = p.request.policy();
  EXPECT_EQ(policy.name(), "loom-green");
  EXPECT_EQ(policy.max_price_per_1k_micro(), 2000);
  EXPECT_EQ(policy.max_cost_micro(), 50'000);
  EXPECT_DOUBLE_EQ(policy.min_tokens_per_s(), 20);
  EXPECT_EQ(policy.max_ttft_ms(), 800);
  EXPECT_EQ(policy.trust(), v1::TRUST_TIER_VERIFIED);
  EXPECT_EQ(policy.regions(0), "eu-west");
  EXPECT_TRUE(policy.private_only());
  EXPECT_DOUBLE_EQ(policy.weights().carbon(), 2);
  // A name alone.
  p = Parse(R"({"model": "loom-auto", "messages": [{"role": "user", "content": "hi"}],
               "loom": {"policy": "loom-fast"}})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.request.policy().name(), "loom-fast");
  for (const auto& [policy_json, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"trust": "friends"})", "loom.policy.trust"},
           {R"({"max_cost": -1})", "loom.policy.max_cost"},
           {R"({"max_price_per_1k": "cheap"})", "loom.policy.max_price_per_1k"},
           {R"({"regions": "eu-west"})", "loom.policy.regions"},
           {R"({"weights": {"speed": 1}})", "loom.policy.weights.speed"},
           {R"({"max_ttft_ms": 1.5})", "loom.policy.max_ttft_ms"},
           {R"({"budget": 3})", "loom.policy.budget"},
           {R"(7)", "loom.policy"}}) {
    p = Parse(absl::StrCat(R"({"model": "loom-auto", "messages": [{"role": "user", "content": "hi"}], "loom": {"policy": )",
                           policy_json, "}}"));
    EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument) << policy_json;
    EXPECT_THAT(p.status.message(), HasSubstr(field)) << policy_json;
  }
}

TEST(ParseChatRequestTest, SamplingFieldsAreReadAndChecked) {
  Parsed p = Parse(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                      "temperature": 0.3, "top_p": 1, "seed": 42, "stop": ["END", "\n\n"],
                      "presence_penalty": -1.5, "user": "u-9", "n": 1, "logprobs": false,
                      "response_format": {"type": "text"}, "tools": []})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  const v1::Sampling& s = p.request.sampling();
  EXPECT_DOUBLE_EQ(s.temperature(), 0.3);
  EXPECT_DOUBLE_EQ(s.top_p(), 1);
  EXPECT_EQ(s.seed(), 42);
  ASSERT_EQ(s.stop_size(), 2);
  EXPECT_EQ(s.stop(1), "\n\n");
  EXPECT_DOUBLE_EQ(s.presence_penalty(), -1.5);
  EXPECT_FALSE(s.has_frequency_penalty());
  EXPECT_EQ(s.user(), "u-9");
  EXPECT_EQ(Parse(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "X"})")
                .request.sampling().stop(0), "X");

  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  for (const auto& [extra, field] : std::vector<std::pair<std::string, std::string>>{
           {R"("temperature": 3)", "'temperature'"},
           {R"("temperature": "hot")", "'temperature'"},
           {R"("top_p": -0.1)", "'top_p'"},
           {R"("seed": 1.5)", "'seed'"},
           {R"("stop": ["a", "b", "c", "d", "e"])", "'stop'"},
           {R"("stop": [1])", "'stop'"},
           {R"("user": 5)", "'user'"},
       }) {
    Parsed bad = Parse(R"({"model": "m", )" + user + ", " + extra + "}");
    EXPECT_EQ(bad.status.code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_THAT(bad.status.message(), HasSubstr(field)) << extra;
  }
}

TEST(ParseChatRequestTest, FieldsNoDeviceHonoursAreRefusedByNameOrDroppedWhenAsked) {
  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  for (const auto& [extra, field] : std::vector<std::pair<std::string, std::string>>{
           {R"("functions": [{"name": "f"}])", "'functions'"},
       }) {
    const std::string body = R"({"model": "m", )" + user + ", " + extra + "}";
    Parsed refused = Parse(body);
    EXPECT_EQ(refused.status.code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_THAT(refused.status.message(), HasSubstr(field)) << extra;
    v1::CompleteRequest out;
    bool stream, usage;
    std::string model;
    std::vector<std::string> dropped;
    EXPECT_TRUE(ParseChatRequest(body, &out, &stream, &usage, &model, /*drop_unsupported=*/true, &dropped).ok());
    ASSERT_EQ(dropped.size(), 1u) << extra;
    EXPECT_EQ("'" + dropped[0] + "'", field);
  }
}

TEST(ParseChatRequestTest, ToolsToolTurnsAndResponseFormatsAreCarriedForTheDevice) {
  Parsed p = Parse(R"({"model": "m", "parallel_tool_calls": false, "tool_choice": "auto",
      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
      "response_format": {"type": "json_object"},
      "messages": [{"role": "user", "content": "weather?"},
                   {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Lima\"}"}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  const v1::Structure& s = p.request.structure();
  EXPECT_THAT(s.tools_json(), HasSubstr("get_weather"));
  EXPECT_EQ(s.tool_choice_json(), "\"auto\"");
  EXPECT_FALSE(s.parallel_tool_calls());
  EXPECT_THAT(s.response_format_json(), HasSubstr("json_object"));
  ASSERT_EQ(p.request.messages_size(), 3);
  EXPECT_TRUE(p.request.messages(1).content().empty());
  EXPECT_THAT(p.request.messages(1).tool_calls_json(), HasSubstr("call_1"));
  EXPECT_EQ(p.request.messages(2).tool_call_id(), "call_1");
}

TEST(ParseChatRequestTest, ImagePartsAreCarriedAsTheyAreAndNeedVision) {
  Parsed p = Parse(R"({"model": "m", "messages": [{"role": "user", "content": [
      {"type": "text", "text": "What is in "}, {"type": "text", "text": "this picture?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]}]})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  const v1::ChatMessage& m = p.request.messages(0);
  EXPECT_EQ(m.content(), "What is in this picture?") << "text parts joined, for counting and routing";
  EXPECT_THAT(m.content_parts_json(), HasSubstr("data:image/png;base64,iVBORw0KGgo="));
  auto needs = NeededCapabilities(p.request.structure(), p.request.messages());
  ASSERT_EQ(needs.size(), 1u);
  EXPECT_EQ(needs[0].first, "vision");
  // The device's backend is given the parts as the client sent them.
  nlohmann::json sent = MessageJson(m);
  ASSERT_TRUE(sent["content"].is_array());
  EXPECT_EQ(sent["content"][2]["image_url"]["detail"], "low");
  // Text-only parts stay a plain string.
  Parsed text = Parse(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})");
  ASSERT_TRUE(text.status.ok());
  EXPECT_TRUE(text.request.messages(0).content_parts_json().empty());
}

TEST(ParseChatRequestTest, LogprobsAreCarriedAndNeedAModelThatReportsThem) {
  Parsed p = Parse(R"({"model": "m", "logprobs": true, "top_logprobs": 2, "messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_TRUE(p.request.structure().logprobs());
  EXPECT_EQ(p.request.structure().top_logprobs(), 2);
  auto needs = NeededCapabilities(p.request.structure(), p.request.messages());
  ASSERT_EQ(needs.size(), 1u);
  EXPECT_EQ(needs[0].first, "logprobs");
  nlohmann::json sent;
  AddStructure(p.request.structure(), &sent);
  EXPECT_EQ(sent["logprobs"], true);
  EXPECT_EQ(sent["top_logprobs"], 2);
  for (const char* bad : {R"("top_logprobs": 2)", R"("logprobs": true, "top_logprobs": 21)", R"("logprobs": "yes")"}) {
    Parsed refused = Parse(std::string(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], )") + bad + "}");
    EXPECT_EQ(refused.status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.status.message(), HasSubstr("logprobs")) << bad;
  }
}

TEST(ParseChatRequestTest, LogitBiasIsCarriedForThePinnedModelAndChecked) {
  Parsed p = Parse(R"({"model": "m", "logit_bias": {"50256": -100, "13": 5.5}, "messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(p.status.ok()) << p.status;
  nlohmann::json sent;
  AddStructure(p.request.structure(), &sent);
  EXPECT_EQ(sent["logit_bias"]["50256"], -100);
  for (const char* bad : {R"("logit_bias": {"cat": 1})", R"("logit_bias": {"1": 101})", R"("logit_bias": [1])"}) {
    Parsed refused = Parse(std::string(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], )") + bad + "}");
    EXPECT_EQ(refused.status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.status.message(), HasSubstr("logit_bias")) << bad;
  }
}

TEST(ParseChatRequestTest, MalformedToolsAndFormatsAreRefusedByField) {
  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  for (const auto& [extra, field] : std::vector<std::pair<std::string, std::string>>{
           {R"("tools": {"type": "function"})", "'tools'"},
           {R"("tools": [{"type": "retrieval"}])", "'tools[0].type'"},
           {R"("tools": [{"type": "function", "function": {}}])", "'tools[0].function.name'"},
           {R"("tool_choice": "sometimes")", "'tool_choice'"},
           {R"("parallel_tool_calls": "yes")", "'parallel_tool_calls'"},
           {R"("response_format": {"type": "json_schema", "json_schema": {"name": "x"}})", "'response_format.json_schema.schema'"},
           {R"("response_format": {"type": "yaml"})", "'response_format.type'"}}) {
    Parsed refused = Parse(R"({"model": "m", )" + user + ", " + extra + "}");
    EXPECT_EQ(refused.status.code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_THAT(refused.status.message(), HasSubstr(field)) << extra;
  }
  Parsed no_id = Parse(R"({"model": "m", "messages": [{"role": "tool", "content": "18 C"}]})");
  EXPECT_THAT(no_id.status.message(), HasSubstr("tool_call_id"));
  Parsed user_calls = Parse(R"({"model": "m", "messages": [{"role": "user", "content": "x", "tool_calls": []}]})");
  EXPECT_THAT(user_calls.status.message(), HasSubstr("tool_calls"));
}

TEST(HttpStatusForTest, StatusesMapAsDocumented) {
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::UnauthenticatedError("")), 401);
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::NotFoundError("")), 404);
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::AlreadyExistsError("")), 409);
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::ResourceExhaustedError("")), 429);
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::UnavailableError("")), 503);
  EXPECT_EQ(HttpFrontDoor::HttpStatusFor(absl::DeadlineExceededError("")), 504);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST(ParseCompletionRequestTest, APromptIsOneUserMessageWithTheSameFields) {
  v1::CompleteRequest r;
  bool stream = false, usage = false;
  std::string model;
  ASSERT_TRUE(ParseCompletionRequest(R"({"model": "m", "prompt": ["Once upon a time"], "max_tokens": 9,
                                        "stop": ["\n"], "stream": true, "temperature": 0.5})",
                                     &r, &stream, &usage, &model)
                  .ok());
  EXPECT_TRUE(stream);
  EXPECT_EQ(model, "m");
  EXPECT_EQ(r.max_tokens(), 9);
  ASSERT_EQ(r.messages_size(), 1);
  EXPECT_EQ(r.messages(0).role(), "user");
  EXPECT_EQ(r.messages(0).content(), "Once upon a time");
  EXPECT_EQ(r.sampling().stop_size(), 1);
}

TEST(ParseCompletionRequestTest, WhatAChatModelCannotDoIsRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"model": "m"})", "'prompt'"},
      {R"({"model": "m", "prompt": ["a", "b"]})", "several prompts"},
      {R"({"model": "m", "prompt": 5})", "'prompt'"},
      {R"({"model": "m", "prompt": "x", "echo": true})", "'echo'"},
      {R"({"model": "m", "prompt": "x", "suffix": "y"})", "'suffix'"},
      {R"({"model": "m", "prompt": "x", "best_of": 3})", "'best_of'"},
      {R"({"model": "m", "prompt": "x", "logprobs": 2})", "'logprobs'"},
      {R"({"model": "m", "messages": []})", "'messages'"},
  };
  for (const auto& [body, field] : cases) {
    v1::CompleteRequest r;
    bool stream = false, usage = false;
    std::string model;
    absl::Status s = ParseCompletionRequest(body, &r, &stream, &usage, &model);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(s.message(), ::testing::HasSubstr(field)) << body;
  }
  // echo false and best_of 1 are what a model does anyway.
  v1::CompleteRequest r;
  bool stream = false, usage = false;
  std::string model;
  EXPECT_TRUE(ParseCompletionRequest(R"({"model": "m", "prompt": "x", "echo": false, "best_of": 1})",
                                     &r, &stream, &usage, &model)
                  .ok());
}

}  // namespace
}  // namespace loom
