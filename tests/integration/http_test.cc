// The OpenAI-compatible HTTP API with curl as the client: completions (streamed and not),
// /v1/models, /healthz, /metrics, every error code, API keys charged and revoked, and the same
// key over gRPC.
#include <fstream>

#include <csignal>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/tokens.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kCurl = kCurlPath;

class HttpTest : public MeshFixture {
 protected:
  // A coordinator that requires keys (no anonymous use).
  void StartSecured(std::vector<std::string> extra = {}) {
    extra.push_back("--allow_anonymous=");
    StartCoordinator("127.0.0.1:0", extra);
    ASSERT_FALSE(coordinator_.http.empty());
  }

  std::string NewKey(const std::string& client, const std::string& credits) {
    CommandResult key = RunCommand("loom-ledger", {"--db=" + db_, "keys", "create", "--client=" + client});
    EXPECT_EQ(key.exit_code, 0) << key.err;
    if (!credits.empty()) {
      CommandResult grant = RunCommand("loom-ledger", {"--db=" + db_, "grant", "client:" + client,
                                                       credits, "--reference=grant-" + client});
      EXPECT_EQ(grant.exit_code, 0) << grant.err;
    }
    return std::string(absl::StripAsciiWhitespace(key.out));
  }

  static std::string Chat(const std::string& model, const std::string& prompt, bool stream = false,
                          const std::string& extra = "") {
    return absl::StrCat(R"({"model": ")", model, R"(", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ")",
                        prompt, R"("}])", stream ? R"(, "stream": true, "stream_options": {"include_usage": true})" : "",
                        extra, "}");
  }
};

TEST_F(HttpTest, CompletionsStreamedAndNotAreChargedToTheKeysClient) {
  StartSecured();
  StartWorker("dev-llama", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-llama"}));
  const std::string key = NewKey("alice", "5");

  HttpResult r = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "What is the capital of Peru?"), key);
  ASSERT_EQ(r.status, 200) << r.body;
  json body = json::parse(r.body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_THAT(body["choices"][0]["message"]["content"].get<std::string>(), HasSubstr("[simulated]"));
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_GT(body["usage"]["completion_tokens"].get<int>(), 0);
  EXPECT_EQ(body["loom"]["plan_kind"], "passthrough");
  EXPECT_THAT(r.headers, HasSubstr("X-Loom-Overhead-Ms: "));
  // Where the time went, as browsers' developer tools read it.
  EXPECT_THAT(r.headers, ::testing::ContainsRegex("Server-Timing: .*reserve;dur=[0-9.]+.*"
                                                  "device;dur=[0-9.]+.*settle;dur=[0-9.]+.*"
                                                  "total;dur=[0-9.]+"));
  const int64_t cost = body["loom"]["cost_micro"].get<int64_t>();
  EXPECT_GT(cost, 0);
  CommandResult balance = RunCommand("loom-ledger", {"--db=" + db_, "balance", "client:alice", "--format=json"});
  EXPECT_EQ(JsonInt64(json::parse(balance.out), "balanceMicro"), 5'000'000 - cost);

  // Streaming: SSE chunks, a usage chunk, [DONE]; the same model pinned by name.
  HttpResult s = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?", true), key, {"-N"});
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_THAT(s.headers, HasSubstr("text/event-stream"));
  std::string text;
  bool usage = false, done = false;
  for (absl::string_view line : absl::StrSplit(s.body, '\n', absl::SkipEmpty())) {
    ASSERT_TRUE(absl::ConsumePrefix(&line, "data: ")) << line;
    if (line == "[DONE]") {
      done = true;
      continue;
    }
    json chunk = json::parse(line);
    if (chunk.contains("usage")) usage = true;
    if (!chunk["choices"].empty() && chunk["choices"][0]["delta"].contains("content")) {
      text += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(usage);
  EXPECT_THAT(text, HasSubstr("[simulated] llama-3.1-8b on dev-llama re: Who wrote Hamlet?"));

  // A compiled request through HTTP, forced by the loom extension.
  HttpResult c = Curl("POST", "/v1/chat/completions",
                      Chat("loom-auto", "Write a poem about rain.", false, R"(, "loom": {"mode": "compete"})"), key);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(json::parse(c.body)["loom"]["plan_kind"], "compete");

  // loom ask through HTTP, streamed and as JSON.
  CommandResult via_http = Loom({"--http=" + coordinator_.http, "--api_key=" + key,
                                               "ask", "What is the capital of Peru?"});
  ASSERT_EQ(via_http.exit_code, 0) << via_http.err;
  EXPECT_THAT(via_http.out, HasSubstr("[simulated] llama-3.1-8b"));
  CommandResult http_json = Loom({"--http=" + coordinator_.http, "--api_key=" + key,
                                                "ask", "--json", "Who wrote Hamlet?"});
  ASSERT_EQ(http_json.exit_code, 0) << http_json.err;
  EXPECT_EQ(json::parse(http_json.out)["object"], "chat.completion");
  CommandResult http_no_key = Loom({"--http=" + coordinator_.http, "ask", "hi"});
  EXPECT_EQ(http_no_key.exit_code, 1);
  EXPECT_THAT(http_no_key.err, HasSubstr("HTTP 401"));

  // The same key works over gRPC; without one the gRPC API refuses.
  CommandResult grpc = Loom({"--coordinator=" + coordinator_.address, "--api_key=" + key,
                                           "ask", "--json", "What is the capital of Chile?"});
  ASSERT_EQ(grpc.exit_code, 0) << grpc.err;
  CommandResult records = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json"});
  // 2 passthrough + 1 compete candidate (one model on the mesh) + 2 via loom --http + 1 via gRPC
  EXPECT_EQ(json::parse(records.out).size(), 6u);
  CommandResult no_key = Loom({"--coordinator=" + coordinator_.address, "ask", "hi"});
  EXPECT_EQ(no_key.exit_code, 1);
  EXPECT_THAT(no_key.err, HasSubstr("UNAUTHENTICATED"));
}

TEST_F(HttpTest, ModelsHealthAndMetrics) {
  StartSecured();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "qwen2.5-coder-7b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  const std::string key = NewKey("bob", "5");
  HttpResult models = Curl("GET", "/v1/models", "", key);
  ASSERT_EQ(models.status, 200) << models.body;
  std::set<std::string> ids;
  const json listed = json::parse(models.body);
  for (const auto& m : listed["data"]) ids.insert(m["id"].get<std::string>());
  // The mesh's models, and the built-in named policies (model names too).
  EXPECT_EQ(ids, (std::set<std::string>{"loom-auto", "loom-cheap", "loom-fast", "loom-green",
                                        "loom-private", "llama-3.1-8b", "qwen2.5-coder-7b"}));
  EXPECT_EQ(Curl("GET", "/healthz", "").status, 200);

  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(Curl("POST", "/v1/chat/completions", Chat("loom-auto", "What is the capital of Peru?"), key).status, 200);
  }
  ASSERT_EQ(Curl("POST", "/v1/chat/completions", Chat("gpt-9", "hi"), key).status, 404);
  HttpResult metrics = Curl("GET", "/metrics", "");
  ASSERT_EQ(metrics.status, 200);
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(metrics.body, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    ASSERT_NE(space, absl::string_view::npos) << line;
    double value;
    ASSERT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    samples[std::string(line.substr(0, space))] = value;
  }
  EXPECT_EQ(samples["loom_requests_total{plan_kind=\"passthrough\",outcome=\"ok\"}"], 2);
  EXPECT_EQ(samples["loom_requests_total{plan_kind=\"passthrough\",outcome=\"not_found\"}"], 1);
  EXPECT_EQ(samples["loom_subtask_attempts_total{outcome=\"ok\"}"], 2);
  EXPECT_EQ(samples["loom_settlements_total"], 2);
  EXPECT_GT(samples["loom_credits_charged_micro_total"], 0);
  EXPECT_EQ(samples["loom_devices{state=\"healthy\"}"], 2);
  EXPECT_EQ(samples["loom_request_duration_seconds_count{plan_kind=\"passthrough\"}"], 3);
  EXPECT_EQ(samples["loom_coordinator_overhead_seconds_count"], 2);
}

TEST_F(HttpTest, EveryErrorHasItsCodeAndOpenAIShape) {
  StartSecured({"--request_timeout_ms=1500"});
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-hang", "mistral-7b", {"--sim_fault=hang:0"});
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-hang"}));
  const std::string key = NewKey("carol", "5");
  const std::string poor = NewKey("poor", "");
  const std::string revoked = NewKey("dave", "5");
  CommandResult list = RunCommand("loom-ledger", {"--db=" + db_, "keys", "list", "--format=json"});
  std::string dave_id;
  const json keys = json::parse(list.out);
  for (const auto& k : keys) {
    if (k["client"] == "client:dave") dave_id = k["id"];
  }
  ASSERT_EQ(RunCommand("loom-ledger", {"--db=" + db_, "keys", "revoke", "--key=" + dave_id}).exit_code, 0);

  struct Case {
    const char* what;
    HttpResult result;
    int status;
  };
  const std::string ok = Chat("loom-auto", "What is the capital of Peru?");
  std::vector<Case> cases = {
      {"malformed JSON", Curl("POST", "/v1/chat/completions", "{\"model\": ", key), 400},
      {"no messages", Curl("POST", "/v1/chat/completions", R"({"model": "loom-auto", "messages": []})", key), 400},
      {"bad mode", Curl("POST", "/v1/chat/completions", Chat("loom-auto", "hi", false, R"(, "loom": {"mode": "x"})"), key), 400},
      {"missing key", Curl("POST", "/v1/chat/completions", ok), 401},
      {"wrong key", Curl("POST", "/v1/chat/completions", ok, "loom_not_a_key"), 401},
      {"revoked key", Curl("POST", "/v1/chat/completions", ok, revoked), 401},
      {"no credits", Curl("POST", "/v1/chat/completions", ok, poor), 402},
      {"unknown model", Curl("POST", "/v1/chat/completions", Chat("gpt-9", "hi"), key), 404},
      {"body too large", Curl("POST", "/v1/chat/completions", Chat("loom-auto", std::string(2 << 20, 'a')), key), 413},
      {"deadline", Curl("POST", "/v1/chat/completions", Chat("mistral-7b", "hang please"), key), 504},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.result.status, c.status) << c.what << ": " << c.result.body;
    json body = json::parse(c.result.body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << c.what << ": " << c.result.body;
    EXPECT_TRUE(body["error"]["message"].is_string()) << c.what;
    EXPECT_TRUE(body["error"]["type"].is_string()) << c.what;
  }
  // Nothing was charged for any of them.
  CommandResult records = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json"});
  EXPECT_EQ(records.out, "[]\n");
  // Each refusal is counted by route and status on /metrics, and requests by model.
  const std::string metrics = Curl("GET", "/metrics", "").body;
  for (const char* line : {
           R"(loom_http_responses_total{endpoint="/v1/chat/completions",status="400"} 3)",
           R"(loom_http_responses_total{endpoint="/v1/chat/completions",status="401"} 3)",
           R"(loom_http_responses_total{endpoint="/v1/chat/completions",status="402"} 1)",
           R"(loom_http_responses_total{endpoint="/v1/chat/completions",status="404"} 1)",
           R"(loom_http_responses_total{endpoint="/v1/chat/completions",status="413"} 1)",
           R"(loom_http_responses_total{endpoint="/v1/chat/completions",status="504"} 1)",
           R"(loom_requests_by_model_total{model="mistral-7b"} 1)",
           R"(loom_requests_by_model_total{model="gpt-9"} 1)"}) {
    EXPECT_THAT(metrics, HasSubstr(line)) << metrics;
  }
}

// The hostile-input report's prompt: a compiled request whose first sub-task has "é" across
// byte 57, where sub-task labels are cut. It used to put invalid UTF-8 into the synthesis
// prompt and the answer, and the SSE writer's json::dump() threw and ended the coordinator.
TEST_F(HttpTest, AnAccentAtTheLabelCutServesEveryDoorAndKeepsTheCoordinatorUp) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "qwen2.5-coder-7b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  const std::string prompt =
      "Write a short poem about the old cafexxxxxx in Z\xC3\xBCrich o\xC3\xB9 nous \xC3\xA9tions "
      "d\xC3\xA9j\xC3\xA0 heureux. Also write a haiku about the sea.";
  const std::string mode = R"(, "loom": {"mode": "compiled"})";
  for (int pad = 0; pad < 3; ++pad) {  // the accent at bytes 56, 57 and 58
    const std::string p = std::string(pad, 'x') + prompt;
    HttpResult unary = Curl("POST", "/v1/chat/completions", Chat("loom-auto", p, false, mode));
    ASSERT_EQ(unary.status, 200) << unary.body;
    json body = json::parse(unary.body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << unary.body;
    EXPECT_EQ(body["loom"]["plan_kind"], "compiled");
    EXPECT_FALSE(body["choices"][0]["message"]["content"].get<std::string>().empty());

    HttpResult streamed = Curl("POST", "/v1/chat/completions", Chat("loom-auto", p, true, mode), "", {"-N"});
    ASSERT_EQ(streamed.status, 200) << streamed.body;
    EXPECT_THAT(streamed.body, HasSubstr("data: [DONE]"));
    EXPECT_THAT(streamed.body, ::testing::Not(HasSubstr("\"error\"")));

    json grpc = AskJson(p, {"--mode=compiled"});
    EXPECT_FALSE(grpc.value("output", "").empty()) << grpc.dump();
  }
  EXPECT_EQ(Curl("GET", "/healthz", "").status, 200);
  EXPECT_TRUE(coordinator_.process->running());
}

TEST_F(HttpTest, EveryResponseNamesItsRequestAndAClientsIdIsServedOnce) {
  StartSecured();
  StartWorker("dev-a", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a"}));
  const std::string key = NewKey("frank", "5");
  const std::string ask = Chat("loom-auto", "What is the capital of Peru?");
  HttpResult first = Curl("POST", "/v1/chat/completions", ask, key, {"-H", "X-Request-Id: frank-001"});
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_THAT(absl::AsciiStrToLower(first.headers), HasSubstr("x-request-id: frank-001"));
  EXPECT_EQ(json::parse(first.body)["id"], "chatcmpl-frank-001");
  // An SDK retry of the same logical request gets the first answer again, charged once.
  HttpResult again = Curl("POST", "/v1/chat/completions", ask, key, {"-H", "Idempotency-Key: frank-001"});
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_THAT(absl::AsciiStrToLower(again.headers), HasSubstr("idempotent-replayed: true"));
  EXPECT_EQ(json::parse(again.body)["choices"][0]["message"]["content"],
            json::parse(first.body)["choices"][0]["message"]["content"]);
  EXPECT_EQ(json::parse(again.body)["loom"]["cost_micro"], json::parse(first.body)["loom"]["cost_micro"]);
  // The ledger keys a client's own ids by its account: one settlement, under client:frank.
  EXPECT_EQ(LedgerRecords("client:frank/frank-001").size(), 1u);
  EXPECT_EQ(LedgerRecords("frank-001").size(), 0u);
  // Another client may use the same id: it is its own request, and learns nothing of frank's.
  const std::string gina = NewKey("gina", "5");
  HttpResult other = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Who painted the Mona Lisa?"),
                          gina, {"-H", "X-Request-Id: frank-001"});
  EXPECT_EQ(other.status, 200) << other.body;
  EXPECT_THAT(absl::AsciiStrToLower(other.headers), Not(HasSubstr("idempotent-replayed")));
  EXPECT_NE(json::parse(other.body)["choices"][0]["message"]["content"],
            json::parse(first.body)["choices"][0]["message"]["content"]);
  EXPECT_EQ(LedgerRecords("client:gina/frank-001").size(), 1u);
  // Errors and streams carry an id too; an id that could break logs or the ledger is refused.
  HttpResult unauthorized = Curl("POST", "/v1/chat/completions", ask);
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_THAT(absl::AsciiStrToLower(unauthorized.headers), HasSubstr("x-request-id: "));
  EXPECT_EQ(json::parse(unauthorized.body)["error"]["code"], "invalid_api_key");
  HttpResult streamed = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Who wrote Hamlet?", true),
                             key, {"-N", "-H", "X-Request-Id: frank-002"});
  EXPECT_EQ(streamed.status, 200);
  EXPECT_THAT(absl::AsciiStrToLower(streamed.headers), HasSubstr("x-request-id: frank-002"));
  HttpResult bad_id = Curl("POST", "/v1/chat/completions", ask, key, {"-H", "X-Request-Id: two words"});
  EXPECT_EQ(bad_id.status, 400) << bad_id.body;
  // A model by id, as SDKs look one up.
  HttpResult model = Curl("GET", "/v1/models/llama-3.1-8b", "", key);
  EXPECT_EQ(model.status, 200) << model.body;
  EXPECT_EQ(json::parse(model.body)["id"], "llama-3.1-8b");
  EXPECT_EQ(Curl("GET", "/v1/models/gpt-9", "", key).status, 404);
}

// httplib's default pool had 8 threads and a keep-alive connection held one while idle: eight
// open streams took /healthz and /metrics away for as long as they lasted.
TEST_F(HttpTest, ProbesAnswerWhileManyStreamsAreOpen) {
  StartCoordinator();
  StartWorker("dev-slow", "llama-3.1-8b",
              {"--sim_tokens_per_second=4", "--sim_output_tokens=400", "--max_concurrency=64"});
  ASSERT_TRUE(WaitForDevices({"dev-slow"}));
  constexpr int kStreams = 16;
  std::vector<std::unique_ptr<Process>> clients;
  std::vector<std::string> outputs;
  for (int i = 0; i < kStreams; ++i) {
    const std::string body_file = absl::StrCat(dir_, "/stream", i, ".json");
    std::ofstream(body_file) << Chat("llama-3.1-8b", absl::StrCat("Tell me a long story number ", i), true);
    outputs.push_back(absl::StrCat(dir_, "/stream", i, ".out"));
    clients.push_back(Spawn(kCurl, {"-s", "-N", "-o", outputs.back(), "-H", "Content-Type: application/json",
                                    "--data-binary", "@" + body_file,
                                    "http://" + coordinator_.http + "/v1/chat/completions"},
                            absl::StrCat(dir_, "/stream", i, ".log")));
  }
  // Every stream has sent its first text, so every one holds a connection now.
  ASSERT_TRUE(WaitFor([&] {
    for (const std::string& o : outputs) {
      if (!absl::StrContains(ReadFile(o), "[simulated]")) return false;
    }
    return true;
  }, absl::Seconds(30)));
  CommandResult health = RunCommand(kCurl, {"-s", "--max-time", "10", "http://" + coordinator_.http + "/healthz"});
  EXPECT_EQ(health.exit_code, 0) << "healthz did not answer with " << kStreams << " streams open";
  CommandResult metrics = RunCommand(kCurl, {"-s", "--max-time", "10", "http://" + coordinator_.http + "/metrics"});
  EXPECT_THAT(metrics.out, HasSubstr("loom_devices"));
  for (auto& c : clients) EXPECT_TRUE(c->running()) << "a stream ended before the probes";
}

TEST_F(HttpTest, FinishReasonsStopSequencesAndUnsupportedFieldsAreHonest) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");  // 24-token answers
  ASSERT_TRUE(WaitForDevices({"dev-a"}));
  // Cut by max_tokens: "length", in both shapes.
  HttpResult cut = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?", false, R"(, "max_tokens": 5)"));
  ASSERT_EQ(cut.status, 200) << cut.body;
  EXPECT_EQ(json::parse(cut.body)["choices"][0]["finish_reason"], "length");
  HttpResult cut_stream = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?", true, R"(, "max_tokens": 5)"), "", {"-N"});
  EXPECT_THAT(cut_stream.body, HasSubstr(R"("finish_reason":"length")"));
  // No max_tokens: the whole answer, "stop" (it used to be cut at 512 and called "stop").
  HttpResult whole = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?"));
  ASSERT_EQ(whole.status, 200) << whole.body;
  json w = json::parse(whole.body);
  EXPECT_EQ(w["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(w["usage"]["completion_tokens"], 24);
  // A stop sequence reaches the device and ends the answer before it.
  HttpResult stopped = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?", false, R"(, "stop": [" re:"], "temperature": 0.2)"));
  ASSERT_EQ(stopped.status, 200) << stopped.body;
  const std::string content = json::parse(stopped.body)["choices"][0]["message"]["content"];
  EXPECT_EQ(content, " [simulated] llama-3.1-8b on dev-a");
  // Fields no device honours are refused by name, and nothing is charged for them.
  HttpResult n = Curl("POST", "/v1/chat/completions",
                      Chat("llama-3.1-8b", "What is the weather?", false, R"(, "functions": [{"name": "f"}])"));
  EXPECT_EQ(n.status, 400) << n.body;
  EXPECT_THAT(json::parse(n.body)["error"]["message"].get<std::string>(), HasSubstr("'functions'"));
  // logit_bias names one tokenizer's ids: with a pinned model it goes to that model; with
  // loom-auto (any model) it is refused.
  EXPECT_EQ(Curl("POST", "/v1/chat/completions",
                 Chat("llama-3.1-8b", "Hi", false, R"(, "logit_bias": {"50256": -100})")).status, 200);
  HttpResult unpinned = Curl("POST", "/v1/chat/completions",
                             Chat("loom-auto", "Hi", false, R"(, "logit_bias": {"50256": -100})"));
  EXPECT_EQ(unpinned.status, 400) << unpinned.body;
  EXPECT_THAT(unpinned.body, HasSubstr("pin the model"));
}

// Tools on a mesh whose models advertise them (simulated devices do): the call comes back as
// OpenAI's tool_calls with finish_reason tool_calls, streamed and not; the result turn
// (content null with tool_calls, then a tool message) is answered from the tool's result;
// a model that does not advertise tools is never chosen for them, and a mesh without one
// refuses 'tools' by name.
TEST_F(HttpTest, ToolCallsRoundTripOnlyOnModelsThatAdvertiseThem) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a"}));
  const std::string tools =
      R"(, "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city", "unit"]}}}])";
  HttpResult call = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "What is the weather in Lima? Use get_weather.", false, tools));
  ASSERT_EQ(call.status, 200) << call.body;
  json r = json::parse(call.body);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_null());
  json calls = r["choices"][0]["message"]["tool_calls"];
  ASSERT_TRUE(calls.is_array() && calls.size() == 1) << call.body;
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  json args = json::parse(calls[0]["function"]["arguments"].get<std::string>());
  EXPECT_TRUE(args["city"].is_string());
  EXPECT_EQ(args["unit"], "c");
  EXPECT_EQ(r["loom"]["plan_kind"], "passthrough");
  EXPECT_GT(r["usage"]["completion_tokens"].get<int>(), 0) << "tool calls are output, and paid";

  // Streamed: the call arrives as a tool_calls delta, then finish_reason tool_calls.
  HttpResult streamed = Curl("POST", "/v1/chat/completions",
                             Chat("loom-auto", "What is the weather in Lima? Use get_weather.", true, tools));
  ASSERT_EQ(streamed.status, 200);
  EXPECT_THAT(streamed.body, HasSubstr(R"("tool_calls":[{)"));
  EXPECT_THAT(streamed.body, HasSubstr(R"("finish_reason":"tool_calls")"));

  // The result turn.
  const std::string id = calls[0]["id"];
  const std::string turn = absl::StrCat(
      R"({"model": "loom-auto", "messages": [{"role": "user", "content": "What is the weather in Lima?"},)",
      R"({"role": "assistant", "content": null, "tool_calls": )", calls.dump(), "},",
      R"({"role": "tool", "tool_call_id": ")", id, R"(", "content": "18 C and cloudy"}])", tools, "}");
  HttpResult answer = Curl("POST", "/v1/chat/completions", turn);
  ASSERT_EQ(answer.status, 200) << answer.body;
  json a = json::parse(answer.body);
  EXPECT_EQ(a["choices"][0]["finish_reason"], "stop");
  EXPECT_THAT(a["choices"][0]["message"]["content"].get<std::string>(), HasSubstr("18 C and cloudy"));

  // JSON output from a schema: valid and of the schema's shape.
  HttpResult structured = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Give me a city.", false,
      R"(, "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}}, "required": ["name", "population"]}}})"));
  ASSERT_EQ(structured.status, 200) << structured.body;
  json value = json::parse(json::parse(structured.body)["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_TRUE(value["name"].is_string());
  EXPECT_TRUE(value["population"].is_number_integer());
}

TEST_F(HttpTest, ToolsAreRefusedByNameWhenNoModelAdvertisesThem) {
  // A worker whose config advertises no capabilities (as an openai backend without
  // --capabilities does): it is never given tools.
  const std::string config = dir_ + "/plain.json";
  std::ofstream(config) << R"({"device_id": "dev-plain", "provider_id": "prov-plain", "models": [{"info": {"name": "plain-7b", "family": "llama", "capabilities": ["vision"]}, "sim": {"output_tokens": 24}}]})";
  StartCoordinator();
  StartWorker("dev-plain", "", {"--config=" + config});
  ASSERT_TRUE(WaitForDevices({"dev-plain"}));
  const std::string tools = R"(, "tools": [{"type": "function", "function": {"name": "get_weather"}}])";
  HttpResult refused = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Use get_weather.", false, tools));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("'tools' needs a model that supports tools"));
  CommandResult records = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json"});
  EXPECT_EQ(records.out, "[]\n");
}

TEST_F(HttpTest, NoDeviceAbleToServeIs503) {
  StartSecured();
  const std::string key = NewKey("erin", "5");
  HttpResult r = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "What is the capital of Peru?"), key);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "server_error");
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// The billing rule when the client goes away (RequestRunner's header), on the HTTP door for a
// response that is not streamed: curl gives up after 1.5 s on a 4 s answer and closes its
// connection; the coordinator sees the close while it waits, stops the device at once, and
// bills only the tokens produced until then, paying the provider exactly those.
TEST_F(HttpTest, AnUnstreamedRequestWhoseClientLeavesIsStoppedAndBilledForWhatWasProduced) {
  StartSecured();
  StartWorker("dev-slow", "mistral-7b", {"--sim_tokens_per_second=100", "--sim_output_tokens=400"});
  ASSERT_TRUE(WaitForDevices({"dev-slow"}));
  const std::string key = NewKey("alice", "5");
  HttpResult r = Curl("POST", "/v1/chat/completions", Chat("mistral-7b", "Tell me a long story."),
                      key, {"-H", "X-Request-Id: left-early", "--max-time", "1.5"});
  EXPECT_EQ(r.status, 0) << "curl gave up before any response";
  json records;
  EXPECT_TRUE(WaitFor([&] {
    records = LedgerRecords("client:alice/left-early");
    return records.is_array() && records.size() == 1;
  }, absl::Seconds(20))) << records.dump();
  ASSERT_TRUE(records.is_array() && records.size() == 1) << records.dump();
  int64_t tokens = 0, credits = 0;
  ASSERT_TRUE(absl::SimpleAtoi(records[0].value("tokenCount", "0"), &tokens)) << records.dump();
  ASSERT_TRUE(absl::SimpleAtoi(records[0].value("creditsMicro", "0"), &credits)) << records.dump();
  EXPECT_GT(tokens, 0);
  EXPECT_LT(tokens, 390) << "the device ran on after its client left";
  // The client paid exactly what the provider earned (no fee configured), and the books hold.
  CommandResult balance = RunCommand("loom-ledger", {"--db=" + db_, "balance", "client:alice", "--format=json"});
  EXPECT_EQ(JsonInt64(json::parse(balance.out, nullptr, false), "balanceMicro"),
            5 * 1000000 - credits) << balance.out;
  CommandResult verify = RunCommand("loom-ledger", {"--db=" + db_, "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// CORS for browser clients: off by default; with --cors_origins, an allowed origin's preflight
// is answered (with the headers the SDK asked to send) and its calls carry the headers a page
// needs to read the answer; another origin gets none of them.
TEST_F(HttpTest, CorsIsOffByDefaultAndAnswersOnlyTheAllowedOrigins) {
  StartSecured({"--cors_origins=https://app.example"});
  StartWorker("dev-llama", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-llama"}));
  const std::string key = NewKey("alice", "5");
  HttpResult preflight = Curl("OPTIONS", "/v1/chat/completions", "", "",
                              {"-H", "Origin: https://app.example", "-H",
                               "Access-Control-Request-Method: POST", "-H",
                               "Access-Control-Request-Headers: authorization, content-type, x-stainless-os"});
  EXPECT_EQ(preflight.status, 204) << preflight.headers;
  EXPECT_THAT(preflight.headers, HasSubstr("Access-Control-Allow-Origin: https://app.example"));
  EXPECT_THAT(preflight.headers, HasSubstr("Access-Control-Allow-Headers: authorization, content-type, x-stainless-os"));
  EXPECT_THAT(preflight.headers, HasSubstr("Access-Control-Allow-Methods: GET, POST, OPTIONS"));
  HttpResult call = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?"),
                         key, {"-H", "Origin: https://app.example"});
  EXPECT_EQ(call.status, 200);
  EXPECT_THAT(call.headers, HasSubstr("Access-Control-Allow-Origin: https://app.example"));
  EXPECT_THAT(call.headers, HasSubstr("Access-Control-Expose-Headers: x-request-id"));
  HttpResult other = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?"),
                          key, {"-H", "Origin: https://evil.example"});
  EXPECT_EQ(other.status, 200) << "CORS is the browser's check; the server only withholds the headers";
  EXPECT_THAT(other.headers, Not(HasSubstr("Access-Control-Allow-Origin")));
}

TEST_F(HttpTest, WithoutCorsOriginsNoCorsHeadersAreSentAndPreflightsAreRefused) {
  StartSecured();
  HttpResult preflight = Curl("OPTIONS", "/v1/chat/completions", "", "",
                              {"-H", "Origin: https://app.example", "-H",
                               "Access-Control-Request-Method: POST"});
  EXPECT_EQ(preflight.status, 405);
  EXPECT_THAT(preflight.headers, Not(HasSubstr("Access-Control-Allow-Origin")));
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

TEST_F(HttpTest, MetricsCanRequireAKeyWhileHealthNeverDoes) {
  StartSecured({"--metrics_require_key"});
  const std::string key = NewKey("prometheus", "");
  EXPECT_EQ(Curl("GET", "/metrics", "").status, 401);
  HttpResult scraped = Curl("GET", "/metrics", "", key);
  EXPECT_EQ(scraped.status, 200);
  EXPECT_THAT(scraped.body, HasSubstr("loom_devices"));
  EXPECT_EQ(Curl("GET", "/healthz", "").status, 200);
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// The report: one key's slow requests locked every other client out (RESOURCE_EXHAUSTED for
// everyone else; 13.8 s behind 400 queued streams). Now, with two slots: the flooding client
// runs two, waits with its share of the waiting room, and past that is told 429; another
// client still gets a place and the next free slot, before the flood's older waiters.
TEST_F(HttpTest, OneClientsFloodCannotLockAnotherClientOut) {
  StartSecured({"--request_threads=2", "--max_requests_per_client=0"});
  StartWorker("dev-slow", "mistral-7b",
              {"--sim_tokens_per_second=100", "--sim_output_tokens=150", "--max_concurrency=8"});
  ASSERT_TRUE(WaitForDevices({"dev-slow"}));
  const std::string flood = NewKey("flood", "50");
  const std::string other = NewKey("other", "5");
  const std::string body_file = dir_ + "/flood.json";
  std::ofstream(body_file) << Chat("mistral-7b", "Tell me a long story.");
  std::vector<std::unique_ptr<Process>> floods;
  for (int i = 0; i < 4; ++i) {
    floods.push_back(Spawn(kCurl, {"-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}\n",
                                   "-H", "Content-Type: application/json", "-H",
                                   "Authorization: Bearer " + flood, "--data-binary",
                                   "@" + body_file, "http://" + coordinator_.http + "/v1/chat/completions"},
                           absl::StrCat(dir_, "/flood-", i, ".log")));
  }
  auto gauge = [&](const std::string& name) {
    const std::string text = Curl("GET", "/metrics", "").body;
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::atoi(text.c_str() + at + name.size() + 2);
  };
  ASSERT_TRUE(WaitFor([&] { return gauge("loom_requests_running") == 2 && gauge("loom_requests_waiting") == 2; },
                      absl::Seconds(20)));
  // A fifth request of the same client is past its share of the waiting room.
  HttpResult refused = Curl("POST", "/v1/chat/completions", Chat("mistral-7b", "And another."), flood);
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("share of the waiting room"));
  EXPECT_THAT(refused.headers, HasSubstr("Retry-After"));
  // The other client is served: it waits for the next free slot, which it gets before the
  // flood's two waiters (it has had no slot yet; they have).
  HttpResult served = Curl("POST", "/v1/chat/completions", Chat("mistral-7b", "What is a loom?"),
                           other, {"-H", "X-Request-Id: other-1"});
  EXPECT_EQ(served.status, 200) << served.body;
  for (auto& p : floods) p->Wait(absl::Seconds(30));
  for (auto& p : floods) EXPECT_THAT(p->Log(), HasSubstr("200 ")) << p->Log();
  // In the order the five requests finished, the other client's is not behind both of the
  // flood's waiters (first come, first served would put it last: it came after them).
  std::vector<std::string> finished;
  for (absl::string_view line : absl::StrSplit(coordinator_.process->Log(), '\n')) {
    if (absl::StrContains(line, "PLAN_KIND_PASSTHROUGH: 1 record")) finished.emplace_back(line);
  }
  ASSERT_EQ(finished.size(), 5u) << coordinator_.process->Log();
  EXPECT_FALSE(absl::StrContains(finished.back(), "client:other/other-1"))
      << "the other client was served after every request of the flood";
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// The report: a stream retried after its device died handed the client the dead device's
// partial text followed by the survivor's whole answer (3 of 3). The survivor now continues
// the text the client already has, and each device is paid for its own part.
TEST_F(HttpTest, AStreamWhoseDeviceDiesReadsAsOneAnswerAndBothDevicesArePaid) {
  StartSecured();
  // It fails 6 tokens into each answer (its stream breaks after the text, deterministically;
  // a killed process may die before its last text leaves it).
  StartWorker("dev-dies", "mistral-7b", {"--sim_fault=fail:6", "--sim_output_tokens=40"});
  ASSERT_TRUE(WaitForDevices({"dev-dies"}));
  StartWorker("dev-lives", "mistral-7b", {"--sim_output_tokens=40"});
  ASSERT_TRUE(WaitForDevices({"dev-dies", "dev-lives"}));
  const std::string key = NewKey("alice", "5");
  // Both are equally good, so which serves first is the selector's choice: ask until a
  // request's first attempt lands on dev-dies.
  HttpResult s;
  json records;
  std::string id;
  for (int i = 0; i < 8; ++i) {
    id = absl::StrCat("resume-", i);
    s = Curl("POST", "/v1/chat/completions", Chat("mistral-7b", "Tell me about looms.", true), key,
             {"-N", "-H", "X-Request-Id: " + id});
    ASSERT_EQ(s.status, 200) << s.body;
    records = LedgerRecords("client:alice/" + id);
    if (records.is_array() && records.size() == 2) break;
  }
  ASSERT_TRUE(records.is_array() && records.size() == 2) << "no request landed on dev-dies: " << records.dump();
  std::string text;
  for (absl::string_view line : absl::StrSplit(s.body, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "data: ") || line == "[DONE]") continue;
    json chunk = json::parse(line);
    if (!chunk["choices"].empty() && chunk["choices"][0]["delta"].contains("content") &&
        chunk["choices"][0]["delta"]["content"].is_string()) {
      text += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  // One answer: dev-dies's start (the header), continued by dev-lives with no second header
  // and no restart notice, at about the usual length (token counts of parts and whole differ
  // by a token at the seam).
  EXPECT_TRUE(absl::StartsWith(text, " [simulated]")) << text;
  EXPECT_EQ(text.find("[simulated]"), text.rfind("[simulated]")) << text;
  EXPECT_THAT(text, Not(HasSubstr("starts again")));
  EXPECT_NEAR(CountTokens(text), 40, 1) << text;
  // Both devices paid, each for its part, and the books hold.
  int64_t total = 0;
  for (const auto& r : records) {
    int64_t tokens = 0;
    ASSERT_TRUE(absl::SimpleAtoi(r.value("tokenCount", "0"), &tokens));
    EXPECT_GT(tokens, 0) << r.dump();
    total += tokens;
  }
  EXPECT_NEAR(total, 40, 1);
  EXPECT_EQ(RunCommand("loom-ledger", {"--db=" + db_, "verify"}).exit_code, 0);
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// The issue: a provider could not see its own earnings, only the operator with the database.
// A provider's key reads them (HTTP and `loom earnings`); it cannot spend, and a client's key
// cannot read them.
TEST_F(HttpTest, AProviderReadsItsOwnEarningsWithItsOwnKeyAndCannotSpendWithIt) {
  StartSecured();
  StartWorker("dev-p", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-p"}));
  const std::string client = NewKey("alice", "5");
  CommandResult made = RunCommand("loom-ledger", {"--db=" + db_, "keys", "create", "--provider=prov-dev-p"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string provider = std::string(absl::StripAsciiWhitespace(made.out));
  CommandResult other = RunCommand("loom-ledger", {"--db=" + db_, "keys", "create", "--provider=prov-nobody"});
  const std::string stranger = std::string(absl::StripAsciiWhitespace(other.out));

  HttpResult before = Curl("GET", "/loom/v1/earnings", "", provider);
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(json::parse(before.body)["earned_micro"], 0);
  HttpResult asked = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "What is a loom?"), client);
  ASSERT_EQ(asked.status, 200) << asked.body;
  const int64_t cost = json::parse(asked.body)["loom"]["cost_micro"];

  json earned = json::parse(Curl("GET", "/loom/v1/earnings", "", provider).body);
  EXPECT_EQ(earned["provider"], "prov-dev-p");
  EXPECT_EQ(earned["earned_micro"], cost) << "no fee: the provider earns what the client paid";
  EXPECT_EQ(earned["requests"], 1);
  EXPECT_EQ(earned["unpaid_micro"], cost);
  // Another provider's key sees only its own (nothing); a client's key sees nothing at all.
  EXPECT_EQ(json::parse(Curl("GET", "/loom/v1/earnings", "", stranger).body)["earned_micro"], 0);
  HttpResult as_client = Curl("GET", "/loom/v1/earnings", "", client);
  EXPECT_EQ(as_client.status, 403) << as_client.body;
  EXPECT_EQ(Curl("GET", "/loom/v1/earnings", "").status, 401);
  // The provider's key does not pay for requests.
  HttpResult spend = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Free work?"), provider);
  EXPECT_EQ(spend.status, 403) << spend.body;
  EXPECT_THAT(spend.body, HasSubstr("cannot pay for requests"));
  // The CLI shows the same.
  CommandResult cli = RunCommand("loom", {"--plaintext", "--http=" + coordinator_.http,
                                          "--api_key=" + provider, "earnings"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("provider prov-dev-p: earned"));
  EXPECT_THAT(cli.out, HasSubstr("in 1 requests on 1 device(s)"));
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// /v1/embeddings: served by embedding models only, retried past a failing device, paid to the
// device that made them (at its price per 1,000 input tokens, the coordinator's count), and
// every malformed input refused by name before anything runs.
TEST_F(HttpTest, EmbeddingsAreServedByEmbeddingDevicesRetriedAndPaid) {
  StartSecured();
  StartWorker("dev-chat", "llama-3.1-8b");
  // dev-broken sorts first among equally loaded devices, so it is tried first and fails.
  StartWorker("dev-broken", "nomic-embed-text", {"--capabilities=embeddings", "--sim_fault=fail:0"});
  StartWorker("dev-embed", "nomic-embed-text",
              {"--capabilities=embeddings", "--price_per_1k_micro=2000"});
  ASSERT_TRUE(WaitForDevices({"dev-chat", "dev-broken", "dev-embed"}));
  const std::string key = NewKey("alice", "5");

  HttpResult r = Curl("POST", "/v1/embeddings",
                      R"({"model": "nomic-embed-text", "input": ["the cat sat", "a dog ran"], "dimensions": 32})",
                      key, {"-H", "X-Request-Id: emb-1"});
  ASSERT_EQ(r.status, 200) << r.body;
  json out = json::parse(r.body);
  ASSERT_EQ(out["data"].size(), 2u);
  EXPECT_EQ(out["data"][1]["index"], 1);
  EXPECT_EQ(out["data"][0]["embedding"].size(), 32u);
  EXPECT_EQ(out["loom"]["device_id"], "dev-embed");
  EXPECT_EQ(out["loom"]["attempts"], 2) << "dev-broken was tried first and failed";
  const int64_t tokens = CountTokens("the cat sat") + CountTokens("a dog ran");
  EXPECT_EQ(out["usage"]["prompt_tokens"], tokens);
  json records = LedgerRecords("client:alice/emb-1");
  ASSERT_EQ(records.size(), 1u) << records.dump() << " (the failed device is paid nothing)";
  EXPECT_EQ(records[0]["deviceId"], "dev-embed");
  EXPECT_EQ(records[0]["subTaskId"], "embeddings");
  EXPECT_EQ(std::stoll(records[0].value("creditsMicro", "0")), tokens * 2000 / 1000);

  // The same id again: already served, never charged twice.
  HttpResult again = Curl("POST", "/v1/embeddings", R"({"model": "nomic-embed-text", "input": "x"})",
                          key, {"-H", "X-Request-Id: emb-1"});
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_EQ(LedgerRecords("client:alice/emb-1").size(), 1u);

  // base64 is little-endian float32, the same vector.
  HttpResult b64 = Curl("POST", "/v1/embeddings",
                        R"({"model": "nomic-embed-text", "input": "the cat sat", "dimensions": 32, "encoding_format": "base64"})",
                        key);
  ASSERT_EQ(b64.status, 200) << b64.body;
  std::string bytes;
  ASSERT_TRUE(absl::Base64Unescape(json::parse(b64.body)["data"][0]["embedding"].get<std::string>(), &bytes));
  ASSERT_EQ(bytes.size(), 32u * 4);
  float first;
  std::memcpy(&first, bytes.data(), 4);
  EXPECT_FLOAT_EQ(first, out["data"][0]["embedding"][0].get<float>());

  // Chat never goes to an embedding model, and an embedding request never to a chat model.
  for (int i = 0; i < 3; ++i) {
    HttpResult chat = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Hello there"), key);
    ASSERT_EQ(chat.status, 200) << chat.body;
    EXPECT_THAT(chat.body, Not(HasSubstr("dev-embed")));
  }
  EXPECT_EQ(Curl("POST", "/v1/embeddings", R"({"model": "llama-3.1-8b", "input": "x"})", key).status, 404);
  json listed = json::parse(Curl("GET", "/v1/models/nomic-embed-text", "", key).body);
  EXPECT_EQ(listed["loom"]["kind"], "embeddings") << listed.dump();
  EXPECT_EQ(json::parse(Curl("GET", "/v1/models/llama-3.1-8b", "", key).body)["loom"]["kind"], "chat");

  for (const char* bad : {R"({"input": "x"})", R"({"model": "nomic-embed-text"})",
                          R"({"model": "nomic-embed-text", "input": []})",
                          R"({"model": "nomic-embed-text", "input": ""})",
                          R"({"model": "nomic-embed-text", "input": [1, 2, 3]})",
                          R"({"model": "nomic-embed-text", "input": "x", "encoding_format": "int8"})",
                          R"({"model": "nomic-embed-text", "input": "x", "dimensions": 0})"}) {
    HttpResult refused = Curl("POST", "/v1/embeddings", bad, key);
    EXPECT_EQ(refused.status, 400) << bad << " " << refused.body;
    EXPECT_THAT(refused.body, HasSubstr("invalid_request_error")) << refused.body;
  }
  EXPECT_EQ(Curl("POST", "/v1/embeddings", R"({"model": "nomic-embed-text", "input": "x"})").status, 401);
  const std::string poor = NewKey("poor", "");
  HttpResult unpaid = Curl("POST", "/v1/embeddings", R"({"model": "nomic-embed-text", "input": "x"})", poor);
  EXPECT_EQ(unpaid.status, 402) << unpaid.body;
  CommandResult verify = RunCommand("loom-ledger", {"--db=" + db_, "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  // The endpoint is its own label in the metrics, refusals by status included.
  const std::string metrics = Curl("GET", "/metrics", "").body;
  EXPECT_THAT(metrics, HasSubstr(R"(endpoint="/v1/embeddings",status="200")")) << metrics;
  EXPECT_THAT(metrics, HasSubstr(R"(endpoint="/v1/embeddings",status="400")")) << metrics;
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// Image parts go to one model that takes them (vision), as the client sent them; a mesh with
// none refuses the request by the field rather than answering a text-only question.
TEST_F(HttpTest, ImagePartsGoToAVisionModelOrAreRefusedByName) {
  StartSecured();
  StartWorker("dev-text", "llama-3.1-8b", {"--capabilities=tools"});
  ASSERT_TRUE(WaitForDevices({"dev-text"}));
  const std::string key = NewKey("alice", "5");
  const std::string body = R"({"model": "loom-auto", "messages": [{"role": "user", "content": [
      {"type": "text", "text": "What is in this picture?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]})";
  HttpResult refused = Curl("POST", "/v1/chat/completions", body, key);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("vision"));
  EXPECT_THAT(refused.body, HasSubstr("image_url"));

  StartWorker("dev-vision", "qwen2.5-coder-7b");  // simulated: honours vision by default
  ASSERT_TRUE(WaitForDevices({"dev-text", "dev-vision"}));
  HttpResult served = Curl("POST", "/v1/chat/completions", body, key);
  ASSERT_EQ(served.status, 200) << served.body;
  json out = json::parse(served.body);
  EXPECT_THAT(out["choices"][0]["message"]["content"].get<std::string>(), HasSubstr("[1 image]"));
  EXPECT_EQ(out["loom"]["plan_kind"], "passthrough") << out.dump();
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// n > 1: one passthrough per choice, in parallel, each paid; streamed choices carry their
// index. Out of range, or with a plan that is not one model's, it is refused by name.
TEST_F(HttpTest, SeveralChoicesAreEachGeneratedAndPaidStreamedOrNot) {
  StartSecured();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  const std::string key = NewKey("alice", "5");
  HttpResult one = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Name a colour"), key,
                        {"-H", "X-Request-Id: n-1"});
  ASSERT_EQ(one.status, 200) << one.body;
  HttpResult three = Curl("POST", "/v1/chat/completions",
                          Chat("llama-3.1-8b", "Name a colour", false, R"(, "n": 3)"), key,
                          {"-H", "X-Request-Id: n-3"});
  ASSERT_EQ(three.status, 200) << three.body;
  json out = json::parse(three.body);
  ASSERT_EQ(out["choices"].size(), 3u) << out.dump();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out["choices"][i]["index"], i);
    EXPECT_FALSE(out["choices"][i]["message"]["content"].get<std::string>().empty());
    EXPECT_EQ(out["choices"][i]["finish_reason"], "stop");
  }
  EXPECT_EQ(LedgerRecords("client:alice/n-3").size(), 3u) << "every choice is paid";
  EXPECT_EQ(out["usage"]["completion_tokens"].get<int64_t>(),
            3 * json::parse(one.body)["usage"]["completion_tokens"].get<int64_t>());

  HttpResult streamed = Curl("POST", "/v1/chat/completions",
                             Chat("llama-3.1-8b", "Name a colour", true, R"(, "n": 2)"), key);
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  std::map<int, std::string> text;
  std::map<int, std::string> finish;
  for (absl::string_view line : absl::StrSplit(streamed.body, '\n')) {
    if (!absl::ConsumePrefix(&line, "data: ") || line == "[DONE]") continue;
    json chunk = json::parse(line, nullptr, false);
    if (chunk.is_discarded() || chunk["choices"].empty()) continue;
    const json& c = chunk["choices"][0];
    text[c["index"].get<int>()] += c["delta"].value("content", "");
    if (!c["finish_reason"].is_null()) finish[c["index"].get<int>()] = c["finish_reason"];
  }
  ASSERT_EQ(text.size(), 2u) << streamed.body;
  EXPECT_THAT(text[0], HasSubstr("Name a colour"));
  EXPECT_THAT(text[1], HasSubstr("Name a colour"));
  EXPECT_EQ(finish[0], "stop");
  EXPECT_EQ(finish[1], "stop");

  for (const char* extra : {R"(, "n": 9)", R"(, "n": 0)", R"(, "n": 2, "loom": {"mode": "compiled"})"}) {
    HttpResult refused = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Hi", false, extra), key);
    EXPECT_EQ(refused.status, 400) << extra << " " << refused.body;
    EXPECT_THAT(refused.body, HasSubstr("n")) << refused.body;
  }
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// logprobs: passed to a model that reports them (simulated devices do; a worker in front of a
// real server lists the capability), and handed back per token, streamed or not.
TEST_F(HttpTest, LogprobsComeBackPerTokenFromAModelThatReportsThem) {
  StartSecured();
  StartWorker("dev-plain", "llama-3.1-8b", {"--capabilities=tools"});
  ASSERT_TRUE(WaitForDevices({"dev-plain"}));
  const std::string key = NewKey("alice", "5");
  const std::string extra = R"(, "logprobs": true, "top_logprobs": 2)";
  HttpResult refused = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Name a colour", false, extra), key);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("logprobs"));

  StartWorker("dev-lp", "qwen2.5-coder-7b");
  ASSERT_TRUE(WaitForDevices({"dev-plain", "dev-lp"}));
  HttpResult r = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Name a colour", false, extra), key);
  ASSERT_EQ(r.status, 200) << r.body;
  json out = json::parse(r.body);
  const json& content = out["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(content.is_array() && !content.empty()) << r.body;
  std::string joined;
  for (const json& t : content) {
    joined += t["token"].get<std::string>();
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    EXPECT_EQ(t["top_logprobs"].size(), 2u);
  }
  EXPECT_EQ(joined, out["choices"][0]["message"]["content"].get<std::string>())
      << "one entry per token of the answer";

  HttpResult streamed = Curl("POST", "/v1/chat/completions", Chat("loom-auto", "Name a colour", true, extra), key);
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  size_t entries = 0;
  for (absl::string_view line : absl::StrSplit(streamed.body, '\n')) {
    if (!absl::ConsumePrefix(&line, "data: ") || line == "[DONE]") continue;
    json chunk = json::parse(line, nullptr, false);
    if (chunk.is_discarded() || chunk["choices"].empty()) continue;
    const json& lp = chunk["choices"][0].value("logprobs", json());
    if (lp.is_object()) entries += lp["content"].size();
  }
  EXPECT_EQ(entries, content.size());
}

// Affinities that learn: a compete verdict and clients' feedback (CLI and HTTP) move the
// selector's affinities, `loom affinities` and the metrics show it, the next unpinned request
// follows it, and all of it survives the coordinator being killed and restarted.
TEST_F(HttpTest, CompeteAndFeedbackMoveTheAffinitiesAndTheNextSelectionAcrossARestart) {
  StartSecured();
  const std::string address = coordinator_.address;
  StartWorker("dev-qwen", "qwen2.5-coder-7b");
  StartWorker("dev-llama", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-qwen", "dev-llama"}));
  const std::string alice = NewKey("alice", "50");
  const std::string bob = NewKey("bob", "5");
  const std::string code = "Write a Python function that reverses a linked list.";
  auto loom = [&](std::vector<std::string> args, const std::string& key) {
    args.insert(args.begin(), {"--coordinator=" + address, "--api_key=" + key});
    return Loom(args);
  };
  auto code_model = [&]() -> std::string {
    CommandResult plan = loom({"plan", code, "--json"}, alice);
    EXPECT_EQ(plan.exit_code, 0) << plan.err;
    json p = json::parse(plan.out, nullptr, false);
    if (p.is_discarded() || p["assignments"].empty()) return "";
    return p["assignments"][0]["model"];
  };
  // (good, bad) observed for a model on code, per `loom affinities --json`.
  auto observed = [&](const std::string& model) -> std::pair<double, double> {
    CommandResult r = loom({"affinities", "--json"}, alice);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json a = json::parse(r.out, nullptr, false);
    for (const auto& row : a.value("affinities", json::array())) {
      if (row["model"] == model && row["category"] == "TASK_CATEGORY_CODE") {
        return {row.value("good", 0.0), row.value("bad", 0.0)};
      }
    }
    return {0, 0};
  };
  ASSERT_EQ(code_model(), "qwen2.5-coder-7b") << "the table's prior: qwen-coder 0.95 for code";

  // A compete run: the winner gains, the loser loses (agreement: half weight).
  CommandResult compete = loom({"ask", code, "--json", "--mode=compete"}, alice);
  ASSERT_EQ(compete.exit_code, 0) << compete.err;
  json c = json::parse(compete.out);
  ASSERT_EQ(c["compete"]["candidates"].size(), 2u);
  for (const auto& cand : c["compete"]["candidates"]) {
    const auto [good, bad] = observed(cand["model"]);
    if (cand.value("winner", false)) {
      EXPECT_DOUBLE_EQ(good, 0.5) << cand.dump();
    } else {
      EXPECT_DOUBLE_EQ(bad, 0.25) << cand.dump();
    }
  }
  const auto after_compete_qwen = observed("qwen2.5-coder-7b");
  const auto after_compete_llama = observed("llama-3.1-8b");

  // Alice's verdicts: qwen-coder's code answers bad (CLI), llama's good (HTTP, by the
  // answer's own id).
  for (int i = 0; i < 8; ++i) {
    CommandResult r = loom({"ask", code, "--json", "--model=qwen2.5-coder-7b"}, alice);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string id = json::parse(r.out)["requestId"];
    CommandResult f = loom({"feedback", id, "bad"}, alice);
    ASSERT_EQ(f.exit_code, 0) << f.err;
    EXPECT_THAT(f.out, HasSubstr("qwen2.5-coder-7b/code +1 bad"));
  }
  std::string llama_answer;
  for (int i = 0; i < 6; ++i) {
    HttpResult r = Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", code), alice);
    ASSERT_EQ(r.status, 200) << r.body;
    llama_answer = json::parse(r.body)["id"];
    HttpResult f = Curl("POST", "/v1/feedback",
                        absl::StrCat(R"({"request_id": ")", llama_answer, R"(", "rating": "good"})"),
                        alice);
    ASSERT_EQ(f.status, 200) << f.body;
    json applied = json::parse(f.body)["applied"];
    ASSERT_EQ(applied.size(), 1u) << f.body;
    EXPECT_EQ(applied[0]["model"], "llama-3.1-8b");
    EXPECT_EQ(applied[0]["category"], "code");
  }
  // One verdict per request: a second is 409 and not retried; another client cannot rate it;
  // a bad body is 400.
  HttpResult again = Curl("POST", "/v1/feedback",
                          absl::StrCat(R"({"request_id": ")", llama_answer, R"(", "rating": "bad"})"),
                          alice);
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_THAT(absl::AsciiStrToLower(again.headers), HasSubstr("x-should-retry: false"));
  HttpResult other = Curl("POST", "/v1/feedback",
                          absl::StrCat(R"({"request_id": ")", llama_answer, R"(", "rating": "bad"})"),
                          bob);
  EXPECT_EQ(other.status, 404) << other.body;
  EXPECT_EQ(Curl("POST", "/v1/feedback", R"({"request_id": "x", "rating": "meh"})", alice).status, 400);
  EXPECT_EQ(Curl("POST", "/v1/feedback", R"({"request_id": "x", "rating": "good"})", "").status, 401);

  const auto qwen = observed("qwen2.5-coder-7b");
  const auto llama = observed("llama-3.1-8b");
  EXPECT_DOUBLE_EQ(qwen.second, after_compete_qwen.second + 8);
  EXPECT_DOUBLE_EQ(llama.first, after_compete_llama.first + 6);
  EXPECT_EQ(code_model(), "llama-3.1-8b") << "the next code request follows what was learnt";
  HttpResult metrics = Curl("GET", "/metrics", "");
  EXPECT_THAT(metrics.body, HasSubstr("loom_affinity_outcomes{model=\"llama-3.1-8b\",category=\"code\",outcome=\"good\"}"));

  // Killed, not stopped: what was learnt is in the ledger database.
  coordinator_.process->Signal(SIGKILL);
  coordinator_.process->Wait(absl::Seconds(10));
  StartCoordinator(address, {"--allow_anonymous="});
  ASSERT_TRUE(WaitForDevices({"dev-qwen", "dev-llama"})) << "workers re-register by themselves";
  EXPECT_EQ(observed("qwen2.5-coder-7b"), qwen);
  EXPECT_EQ(observed("llama-3.1-8b"), llama);
  EXPECT_EQ(code_model(), "llama-3.1-8b");
  CommandResult plan = loom({"plan", code}, alice);
  EXPECT_THAT(plan.out, HasSubstr("prior 0.70, ")) << plan.out;
  // The verdicts, too: a second one on a request rated before the restart is still refused.
  CommandResult twice = loom({"feedback", llama_answer.substr(strlen("chatcmpl-")), "good"}, alice);
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_THAT(twice.err, HasSubstr("already rated good"));
}

}  // namespace
}  // namespace loom::testing

namespace loom::testing {
namespace {

// The scraper operators run: Debian's Prometheus (installed by deploy/setup.sh) scrapes
// /metrics with a key, and promtool lints what it reads. A job with a wrong key is refused.
TEST_F(HttpTest, ARealPrometheusScrapesTheMetricsWithAKey) {
  const std::string prometheus = "/usr/bin/prometheus", promtool = "/usr/bin/promtool";
  ASSERT_EQ(access(prometheus.c_str(), X_OK), 0) << "no " << prometheus << ": run deploy/setup.sh";
  StartSecured({"--metrics_require_key"});
  StartWorker("dev-llama", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-llama"}));
  const std::string key = NewKey("alice", "5");
  const std::string scraper = NewKey("prometheus", "");
  ASSERT_EQ(Curl("POST", "/v1/chat/completions", Chat("llama-3.1-8b", "Who wrote Hamlet?"), key).status, 200);

  const std::string metrics_file = dir_ + "/metrics.txt";
  std::ofstream(metrics_file) << Curl("GET", "/metrics", "", scraper).body;
  CommandResult lint = RunCommand("/bin/sh", {"-c", promtool + " check metrics < " + metrics_file + " 2>&1"});
  EXPECT_EQ(lint.exit_code, 0) << lint.out;
  EXPECT_EQ(lint.out, "") << "promtool's lint findings";

  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string config = dir_ + "/prometheus.yml";
  std::ofstream(config) << absl::StrCat(
      "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n",
      "  - job_name: loom\n    authorization:\n      credentials: ", scraper, "\n",
      "    static_configs:\n      - targets: ['", coordinator_.http, "']\n",
      "  - job_name: loom-wrong-key\n    authorization:\n      credentials: loom_not_a_key\n",
      "    static_configs:\n      - targets: ['", coordinator_.http, "']\n");
  auto server = Spawn(prometheus, {"--config.file=" + config, "--storage.tsdb.path=" + dir_ + "/tsdb",
                                   absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                      dir_ + "/prometheus.log");
  const std::string api = absl::StrCat("http://127.0.0.1:", port, "/api/v1/");
  auto get = [&](const std::string& path, const std::string& query = "") {
    std::vector<std::string> args = {"-s", "-G", api + path};
    if (!query.empty()) args.insert(args.end(), {"--data-urlencode", "query=" + query});
    CommandResult r = RunCommand(kCurl, args);
    json j = json::parse(r.out, nullptr, false);
    return j.is_discarded() ? json::object() : j;
  };
  // Both jobs scraped once: one healthy, one refused.
  std::map<std::string, json> targets;
  ASSERT_TRUE(WaitFor([&] {
    targets.clear();
    for (const json& t : get("targets").value("data", json::object()).value("activeTargets", json::array())) {
      if (t.value("health", "unknown") != "unknown") targets[t["labels"].value("job", "")] = t;
    }
    return targets.size() == 2;
  }, absl::Seconds(30))) << server->Log();
  EXPECT_EQ(targets["loom"].value("health", ""), "up") << targets["loom"].dump();
  EXPECT_EQ(targets["loom-wrong-key"].value("health", ""), "down");
  EXPECT_THAT(targets["loom-wrong-key"].value("lastError", ""), HasSubstr("401"));

  // What it stored is what the coordinator counted: one request served, by plan kind.
  json served;
  ASSERT_TRUE(WaitFor([&] {
    served = get("query", R"(sum(loom_requests_total{job="loom",outcome="ok"}))");
    const json& result = served.value("data", json::object()).value("result", json::array());
    return !result.empty();
  }, absl::Seconds(30))) << served.dump();
  EXPECT_EQ(served["data"]["result"][0]["value"][1], "1") << served.dump();
}

}  // namespace
}  // namespace loom::testing
