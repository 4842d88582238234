#include "worker/openai_provider.h"

#include <thread>

#include "common/tokens.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/openai_standin.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

class OpenAIProviderTest : public ::testing::Test {
 protected:
  void SetUp() override { base_url_ = server_.Start(); }

  std::unique_ptr<OpenAIProvider> Provider(const std::string& model, std::string api_key = "") {
    auto p = OpenAIProvider::Create({.base_url = base_url_, .model = model, .api_key = api_key,
                                     .read_timeout = absl::Seconds(10)});
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }

  static GenerateRequest Ask(const std::string& text, absl::Duration within = absl::Seconds(10)) {
    GenerateRequest r;
    v1::ChatMessage system, user;
    system.set_role("system");
    system.set_content("be brief");
    user.set_role("user");
    user.set_content(text);
    r.messages = {system, user};
    r.max_tokens = 64;
    r.deadline = absl::Now() + within;
    return r;
  }

  absl::StatusOr<v1::InferChunk> Run(OpenAIProvider& p, const GenerateRequest& r, std::string* text,
                                const Cancellation& cancel) {
    return p.Generate(r, [&](std::string_view piece) { text->append(piece); return true; }, cancel);
  }

  OpenAIStandIn server_{{"llama-standin", "qwen-nousage", "x-error-400", "x-error-429",
                         "x-error-500", "x-error-401", "x-drop", "x-hang", "x-slow"}};
  std::string base_url_;
  Cancellation cancel_;
};

TEST_F(OpenAIProviderTest, StreamsTextAndReportsTheServersUsage) {
  auto p = Provider("llama-standin", "secret");
  std::string text;
  auto usage = Run(*p, Ask("explain rust ownership please"), &text, cancel_);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(text, " standin llama-standin answers: explain rust ownership please");
  EXPECT_EQ(usage->usage().completion_tokens(), 7);  // what the server said it generated
  nlohmann::json sent = server_.last_request();
  EXPECT_EQ(sent["model"], "llama-standin");
  EXPECT_EQ(sent["stream"], true);
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
  EXPECT_EQ(sent["max_tokens"], 64);
  ASSERT_EQ(sent["messages"].size(), 2u);
  EXPECT_EQ(sent["messages"][0]["role"], "system");
  EXPECT_EQ(server_.last_authorization(), "Bearer secret");
  EXPECT_EQ(usage->finish_reason(), "stop");
  EXPECT_FALSE(sent.contains("temperature")) << "unset sampling fields are not sent";
}

TEST_F(OpenAIProviderTest, SamplingGoesUpstreamAndTheFinishReasonComesBack) {
  auto p = Provider("llama-standin");
  GenerateRequest r = Ask("one two three four five six");
  r.max_tokens = 4;
  r.sampling.set_temperature(0.2);
  r.sampling.set_top_p(0.9);
  r.sampling.set_seed(7);
  r.sampling.add_stop("\n\n");
  r.sampling.set_frequency_penalty(0.5);
  r.sampling.set_user("end-user-1");
  r.structure.set_logit_bias_json(R"({"50256":-100})");
  std::string text;
  auto last = Run(*p, r, &text, cancel_);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->finish_reason(), "length");  // the server cut it at max_tokens
  nlohmann::json sent = server_.last_request();
  EXPECT_DOUBLE_EQ(sent["temperature"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(sent["top_p"].get<double>(), 0.9);
  EXPECT_EQ(sent["seed"], 7);
  EXPECT_EQ(sent["stop"], nlohmann::json::array({"\n\n"}));
  EXPECT_DOUBLE_EQ(sent["frequency_penalty"].get<double>(), 0.5);
  EXPECT_EQ(sent["user"], "end-user-1");
  EXPECT_FALSE(sent.contains("presence_penalty"));
  EXPECT_EQ(sent["logit_bias"]["50256"], -100);
}

TEST_F(OpenAIProviderTest, ConsecutiveCallsReuseOneKeptAliveConnection) {
  auto p = Provider("llama-standin");
  for (int i = 0; i < 5; ++i) {
    std::string text;
    ASSERT_TRUE(Run(*p, Ask("hello"), &text, cancel_).ok()) << i;
    EXPECT_FALSE(text.empty());
  }
  EXPECT_EQ(server_.chat_connections(), 1);
}

TEST_F(OpenAIProviderTest, AFailedCallsConnectionIsNotReused) {
  auto p = Provider("llama-standin");
  std::string text;
  ASSERT_TRUE(Run(*p, Ask("hello"), &text, cancel_).ok());
  auto drop = Provider("x-drop");  // its own pool
  EXPECT_FALSE(Run(*drop, Ask("hello"), &text, cancel_).ok());
  EXPECT_FALSE(Run(*drop, Ask("hello"), &text, cancel_).ok());
  EXPECT_EQ(server_.chat_connections(), 3) << "each dropped call came on a new connection";
}

TEST_F(OpenAIProviderTest, WithoutUsageTheTextIsCounted) {
  auto p = Provider("qwen-nousage");
  std::string text;
  auto usage = Run(*p, Ask("hi"), &text, cancel_);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->usage().completion_tokens(), CountTokens(text));
}

TEST_F(OpenAIProviderTest, UpstreamErrorsMapToRetryDecisions) {
  struct Case {
    const char* model;
    absl::StatusCode code;
  };
  for (const Case& c : {Case{"x-error-400", absl::StatusCode::kInvalidArgument},
                        Case{"x-error-429", absl::StatusCode::kResourceExhausted},
                        Case{"x-error-500", absl::StatusCode::kUnavailable},
                        Case{"x-error-401", absl::StatusCode::kUnavailable},
                        Case{"not-served-here", absl::StatusCode::kNotFound}}) {
    auto p = Provider(c.model);
    std::string text;
    auto usage = Run(*p, Ask("hi"), &text, cancel_);
    EXPECT_EQ(usage.status().code(), c.code) << c.model << ": " << usage.status();
    EXPECT_THAT(usage.status().message(), HasSubstr("upstream HTTP")) << c.model;
  }
}

TEST_F(OpenAIProviderTest, DroppedConnectionIsUnavailable) {
  auto p = Provider("x-drop");
  std::string text;
  auto usage = Run(*p, Ask("hello there friend"), &text, cancel_);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kUnavailable) << usage.status();
  EXPECT_FALSE(text.empty()) << "the text before the drop arrived";
}

TEST_F(OpenAIProviderTest, CancellationClosesTheUpstreamRequest) {
  auto p = Provider("x-hang");
  std::string text;
  // Cancel once the server is streaming (bounded wait), as a client going away would.
  std::thread canceller([&] {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (server_.last_request().is_null() && absl::Now() < deadline) std::this_thread::yield();
    cancel_.Cancel();
  });
  const absl::Time start = absl::Now();
  auto usage = Run(*p, Ask("hi", absl::Seconds(30)), &text, cancel_);
  canceller.join();
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kCancelled) << usage.status();
  EXPECT_FALSE(server_.last_request().is_null()) << "the request reached the server";
  EXPECT_LT(absl::Now() - start, absl::Seconds(25)) << "cancelled long before the deadline";
}

TEST_F(OpenAIProviderTest, DeadlineBoundsASlowServer) {
  auto p = Provider("x-hang");
  std::string text;
  auto usage = Run(*p, Ask("hi", absl::Milliseconds(200)), &text, cancel_);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kDeadlineExceeded) << usage.status();
}

TEST_F(OpenAIProviderTest, ConsumerGoingAwayStopsTheStream) {
  auto p = Provider("x-slow");
  int pieces = 0;
  auto usage = p->Generate(Ask("one two three four"), [&](std::string_view) { return ++pieces < 2; },
                           cancel_);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(pieces, 2);
}

TEST_F(OpenAIProviderTest, UnreachableServerIsUnavailable) {
  const int port = server_.port();
  server_.Stop();
  auto p = OpenAIProvider::Create({.base_url = absl::StrCat("http://127.0.0.1:", port, "/v1"),
                                   .model = "llama-standin"});
  std::string text;
  auto usage = Run(**p, Ask("hi"), &text, cancel_);
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kUnavailable) << usage.status();
}

TEST_F(OpenAIProviderTest, LogprobsAreAskedForAndAssembledForTheWholeAnswer) {
  auto p = Provider("llama-standin");
  GenerateRequest r = Ask("explain rust ownership please");
  r.structure.set_logprobs(true);
  r.structure.set_top_logprobs(3);
  std::string text;
  auto last = Run(*p, r, &text, cancel_);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(server_.last_request()["logprobs"], true);
  EXPECT_EQ(server_.last_request()["top_logprobs"], 3);
  nlohmann::json lp = nlohmann::json::parse(last->logprobs_json());
  ASSERT_TRUE(lp.is_array());
  std::string joined;
  for (const auto& t : lp) joined += t["token"].get<std::string>();
  EXPECT_EQ(joined, text);
  // Not asked: none reported.
  auto plain = Run(*p, Ask("hi"), &text, cancel_);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->logprobs_json().empty());
}

TEST_F(OpenAIProviderTest, DiscoversTheServersModels) {
  auto models = OpenAIProvider::ListModels(base_url_, "");
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_EQ(models->size(), 9u);
  EXPECT_EQ((*models)[0].id, "llama-standin");
  EXPECT_EQ((*models)[0].parameters_b, 0) << "a plain server (vLLM) does not say";
}

TEST_F(OpenAIProviderTest, SizesComeFromLlamaServerAndOllama) {
  server_.set_flavor(OpenAIStandIn::Flavor::kLlamaServer);
  auto llama = OpenAIProvider::ListModels(base_url_, "");
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_NEAR((*llama)[0].parameters_b, 8.03, 0.01) << "meta.n_params";
  server_.set_flavor(OpenAIStandIn::Flavor::kOllama);
  auto ollama = OpenAIProvider::ListModels(base_url_, "");
  ASSERT_TRUE(ollama.ok()) << ollama.status();
  EXPECT_NEAR((*ollama)[0].parameters_b, 70.6, 0.01) << "/api/tags parameter_size";
}

TEST_F(OpenAIProviderTest, TheUpstreamCheckSaysWhatToFix) {
  EXPECT_TRUE(Provider("llama-standin")->CheckUpstream(absl::Seconds(5)).ok());

  absl::Status missing = Provider("llama3.1:8b")->CheckUpstream(absl::Seconds(5));
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.message(), HasSubstr("model 'llama3.1:8b' is not served"));
  EXPECT_THAT(missing.message(), HasSubstr("llama-standin"));
  EXPECT_THAT(missing.message(), HasSubstr("ollama pull llama3.1:8b"));

  server_.set_loading(true);
  absl::Status loading = Provider("llama-standin")->CheckUpstream(absl::Seconds(5));
  EXPECT_EQ(loading.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(loading.message(), HasSubstr("not ready yet"));
  EXPECT_THAT(loading.message(), HasSubstr("Loading model"));
  server_.set_loading(false);

  // The base URL without /v1: the server has no /models there.
  const std::string origin = base_url_.substr(0, base_url_.size() - 3);
  auto bare = OpenAIProvider::Create({.base_url = origin, .model = "llama-standin"});
  ASSERT_TRUE(bare.ok());
  absl::Status no_v1 = (*bare)->CheckUpstream(absl::Seconds(5));
  EXPECT_EQ(no_v1.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_v1.message(), HasSubstr("try --openai_base_url=" + base_url_));

  server_.Stop();
  absl::Status gone = Provider("llama-standin")->CheckUpstream(absl::Seconds(5));
  EXPECT_EQ(gone.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(gone.message(), HasSubstr("is not answering"));
}

TEST_F(OpenAIProviderTest, LlamaServerServesItsOneModelUnderAnyName) {
  OpenAIStandIn one({"/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"});
  one.set_flavor(OpenAIStandIn::Flavor::kLlamaServer);
  auto p = OpenAIProvider::Create({.base_url = one.Start(), .model = "llama-3.1-8b"});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE((*p)->CheckUpstream(absl::Seconds(5)).ok());
}

TEST(OpenAIProviderConfigTest, BaseUrlsAreCheckedAndSplit) {
  std::string origin, prefix;
  ASSERT_TRUE(SplitBaseUrl("http://127.0.0.1:11434/v1/", &origin, &prefix).ok());
  EXPECT_EQ(origin, "http://127.0.0.1:11434");
  EXPECT_EQ(prefix, "/v1");
  ASSERT_TRUE(SplitBaseUrl("https://api.example.invalid", &origin, &prefix).ok());
  EXPECT_EQ(prefix, "");
  EXPECT_FALSE(SplitBaseUrl("127.0.0.1:8080", &origin, &prefix).ok());
  EXPECT_FALSE(SplitBaseUrl("http:///v1", &origin, &prefix).ok());
  EXPECT_FALSE(OpenAIProvider::Create({.base_url = "http://h:1", .model = ""}).ok());
}

TEST(StatusFromHttpTest, AHostileBodyBecomesAShortValidMessage) {
  // 300 bytes cut inside a character, and bytes that are not UTF-8 at all: the message must
  // still be valid UTF-8, since it reaches JSON on the coordinator.
  std::string body(299, 'x');
  body += "\xC3\xA9 \xFF\xFE tail";
  absl::Status s = StatusFromHttp(500, body);
  EXPECT_TRUE(IsValidUtf8(s.message())) << s.message();
  EXPECT_LT(s.message().size(), 340u);
  EXPECT_TRUE(IsValidUtf8(StatusFromHttp(502, "\xFF\xFE\xC3").message()));
}

TEST(StatusFromHttpTest, UsesTheOpenAIErrorMessage) {
  absl::Status s = StatusFromHttp(429, R"({"error": {"message": "slow down", "type": "rate"}})");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("slow down"));
  EXPECT_EQ(StatusFromHttp(503, "<html>").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromHttp(504, "").code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace loom
