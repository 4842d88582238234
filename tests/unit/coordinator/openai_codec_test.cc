// The HTTP door's wire codec on its own: errors as OpenAI SDKs read them (status, type, code,
// retry headers) and answers in OpenAI's shapes.
#include "coordinator/front/openai_codec.h"

#include "gtest/gtest.h"
#include "ledger/ledger_rules.h"

namespace loom::http_codec {
namespace {

std::string HeaderOf(const HttpResponse& res, const std::string& name) {
  for (const auto& [n, v] : res.headers) {
    if (n == name) return v;
  }
  return "";
}

TEST(OpenAiCodecTest, ErrorsCarryOpenAisTypeCodeAndRetryAdvice) {
  const HttpResponse bad = ErrorResponse(400, "messages: required");
  EXPECT_EQ(bad.status, 400);
  const json body = json::parse(bad.body);
  EXPECT_EQ(body["error"]["message"], "messages: required");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["code"], "invalid_request");
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_EQ(HeaderOf(bad, "x-should-retry"), "false");  // as sent, it can never succeed

  const HttpResponse busy = ErrorResponse(absl::ResourceExhaustedError("busy"));
  EXPECT_EQ(busy.status, 429);
  EXPECT_EQ(HeaderOf(busy, "Retry-After"), "1");
  EXPECT_EQ(HeaderOf(busy, "x-should-retry"), "");  // SDKs retry a 429 by themselves

  const HttpResponse served = ErrorResponse(absl::AlreadyExistsError("already served"));
  EXPECT_EQ(served.status, 409);
  EXPECT_EQ(HeaderOf(served, "x-should-retry"), "false");

  // The same id running elsewhere: worth retrying shortly, when the retry gets the answer.
  const HttpResponse running = ErrorResponse(absl::AbortedError("in progress"));
  EXPECT_EQ(running.status, 409);
  EXPECT_EQ(HeaderOf(running, "x-should-retry"), "true");
  EXPECT_EQ(json::parse(running.body)["error"]["code"], "request_in_progress");

  const HttpResponse none = ErrorResponse(absl::UnavailableError("no device"));
  EXPECT_EQ(none.status, 503);
  EXPECT_EQ(json::parse(none.body)["error"]["type"], "server_error");
  EXPECT_EQ(HeaderOf(none, "x-should-retry"), "");

  EXPECT_EQ(HttpStatusFor(ledger_rules::InsufficientCredits("poor")), 402);
  EXPECT_EQ(json::parse(ErrorResponse(402, "poor").body)["error"]["code"], "insufficient_quota");
}

TEST(OpenAiCodecTest, AnErrorKeepsTheHeadersAlreadyChosen) {
  HttpResponse base;
  base.SetHeader("x-request-id", "req-7");
  const HttpResponse res = ErrorResponse(base, absl::NotFoundError("no such model"));
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(HeaderOf(res, "x-request-id"), "req-7");
  EXPECT_EQ(HeaderOf(res, "x-should-retry"), "false");
}

TEST(OpenAiCodecTest, AnswersInOpenAisShapes) {
  // A tool-only answer has null content; its streamed delta numbers the calls.
  const std::string calls = R"([{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},)"
                            R"({"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}])";
  const json m = AssistantMessage("", calls);
  EXPECT_TRUE(m["content"].is_null());
  EXPECT_EQ(m["tool_calls"].size(), 2u);
  EXPECT_EQ(AssistantMessage("hi", "")["content"], "hi");
  const json delta = ToolCallsDelta(calls);
  EXPECT_EQ(delta[0]["index"], 0);
  EXPECT_EQ(delta[1]["index"], 1);
  EXPECT_EQ(ToolCallsDelta("not json"), json::array());

  v1::CompleteResponse r;
  r.set_output("Canberra");
  r.mutable_usage()->set_prompt_tokens(7);
  r.mutable_usage()->set_completion_tokens(2);
  EXPECT_EQ(FinishReason(r), "stop");
  r.set_finish_reason("length");
  const std::vector<v1::Choice> one = Choices(r);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].output(), "Canberra");
  EXPECT_EQ(one[0].finish_reason(), "length");
  EXPECT_EQ(Usage(r), json({{"prompt_tokens", 7}, {"completion_tokens", 2}, {"total_tokens", 9}}));
  EXPECT_TRUE(Logprobs(one[0]).is_null());
  v1::Choice with;
  with.set_logprobs_json(R"([{"token":"Can","logprob":-0.1}])");
  EXPECT_EQ(Logprobs(with)["content"][0]["token"], "Can");
}

TEST(OpenAiCodecTest, TheReceiptNamesThePlanItsPartsAndItsCost) {
  v1::CompleteResponse r;
  r.set_request_id("req-1");
  r.mutable_plan()->set_kind(v1::PLAN_KIND_COMPILED);
  auto* t = r.mutable_plan()->add_sub_tasks();
  t->set_id("t1");
  t->set_category(v1::TASK_CATEGORY_CODE);
  auto* res = r.add_results();
  res->set_sub_task_id("t1");
  res->set_device_id("dev-a");
  auto* c = r.add_contributions();
  c->set_device_id("dev-a");
  c->set_role(v1::CONTRIBUTION_ROLE_EXECUTE);
  c->set_credits_micro(1500);
  r.set_cost_micro(1500);
  r.mutable_policy()->set_name("loom-cheap");
  const json loom = LoomObject(r);
  EXPECT_EQ(loom["plan_kind"], "compiled");
  EXPECT_EQ(loom["sub_tasks"][0]["device"], "dev-a");
  EXPECT_EQ(loom["sub_tasks"][0]["category"], "code");
  EXPECT_EQ(loom["contributions"][0]["role"], "execute");
  EXPECT_EQ(loom["cost_micro"], 1500);
  EXPECT_EQ(loom["policy"]["name"], "loom-cheap");
  EXPECT_FALSE(loom.contains("compete"));
}

TEST(OpenAiCodecTest, ServerTimingAndPathDecoding) {
  v1::Timings t;
  t.set_analyze_us(1500);
  t.set_total_us(12000);
  EXPECT_EQ(ServerTiming(t), "analyze;dur=1.500, total;dur=12.000");  // zero stages left out
  EXPECT_EQ(PercentDecode("client%3Aalice%2Freq-1"), "client:alice/req-1");
  EXPECT_EQ(PercentDecode("100%"), "100%");
  EXPECT_EQ(PercentDecode("%zz"), "%zz");
  EXPECT_EQ(Lower("PLAN_KIND_PASSTHROUGH", "PLAN_KIND_"), "passthrough");
}

}  // namespace
}  // namespace loom::http_codec
