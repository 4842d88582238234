#include "coordinator/pipeline/compete_runner.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

TEST(CompeteRunnerTest, SimilarityAndJudgeParsing) {
  EXPECT_DOUBLE_EQ(CompeteRunner::Similarity("a b c", "a b c"), 1.0);
  EXPECT_DOUBLE_EQ(CompeteRunner::Similarity("a b", "c d"), 0.0);
  EXPECT_DOUBLE_EQ(CompeteRunner::Similarity("A, b!", "a c"), 1.0 / 3);
  auto v = CompeteRunner::ParseJudgeVerdict(
      R"(```json
{"winner": 2, "scores": [6, 9, 4.5], "reason": "the most complete"}
```)", 3);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->winner, 2);
  EXPECT_THAT(v->scores, testing::ElementsAre(6, 9, 4.5));
  EXPECT_EQ(v->reason, "the most complete");
  EXPECT_TRUE(CompeteRunner::ParseJudgeVerdict(R"({"winner": 3})", 3).ok());  // scores optional
  for (const char* malformed : {"2", "Answer 3 is best.", R"({"winner": 4})", R"({"winner": 0})",
                                R"({"winner": "2"})", R"({"winner": 1, "scores": [5, 6]})",
                                R"({"winner": 1, "scores": [5, 6, 11]})",
                                R"({"winner": 1, "scores": [5, 9, 1]})", R"({"winner": 1, )",
                                R"({"winner": 1, "reason": 7})"}) {
    auto bad = CompeteRunner::ParseJudgeVerdict(malformed, 3);
    EXPECT_FALSE(bad.ok()) << malformed;
    EXPECT_THAT(bad.status().message(), HasSubstr("malformed verdict")) << malformed;
  }
}

class CompeteTest : public MeshFixture {
 protected:
  void SetUp() override {
    AddDevice("l", "llama-3.1-8b", "llama");
    AddDevice("m", "mistral-7b", "mistral");
    AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
    devices_.Set("l:1", {.chunks = {" the sea is wide and blue"}});
    devices_.Set("m:1", {.chunks = {" the sea is wide and deep and blue"}});
    devices_.Set("q:1", {.chunks = {" int main() { return 0; }"}});
  }
  absl::StatusOr<CompeteOutcome> Run(CompeteOptions options) {
    return CompeteRunner(options, &attempts_)
        .Run(Scope(absl::Seconds(10)), {User("Describe the sea")}, v1::TASK_CATEGORY_CREATIVE, 64,
             64);
  }
};

TEST_F(CompeteTest, TopKDistinctModelsAnswerAndAgreementPicksOne) {
  auto c = Run({.k = 3});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->candidates.size(), 3u);
  std::set<std::string> models;
  for (const auto& cand : c->candidates) models.insert(cand.chosen.model.name());
  EXPECT_EQ(models.size(), 3u);
  EXPECT_EQ(c->method, "agreement");
  // The two sea answers agree; llama's is ranked first for creative and agrees as much.
  EXPECT_NE(c->candidates[c->winner].chosen.device_id, "q");
  EXPECT_THAT(c->reason, HasSubstr("agrees most"));
  int answers = 0;
  for (const auto& e : events_) answers += e.has_output() && e.output().answer();
  EXPECT_EQ(answers, 1) << "only the winner is streamed as the answer";
}

TEST_F(CompeteTest, KIsBoundedByTheModelsThereAre) {
  auto c = Run({.k = 8});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->candidates.size(), 3u);
}

TEST_F(CompeteTest, AJudgeChoosesWhenConfigured) {
  AddDevice("j", "judge-model", "llama");
  devices_.Set("j:1", {.chunks = {R"({"winner": 3, "scores": [2, 5, 8], "reason": "clearest"})"}});
  auto c = Run({.k = 3, .judge_model = "judge-model"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->method, "judge");
  EXPECT_EQ(c->winner, 2);
  EXPECT_THAT(c->scores, testing::ElementsAre(2, 5, 8));
  EXPECT_THAT(c->reason, HasSubstr("clearest"));
  EXPECT_THAT(devices_.InputOf("judge"), HasSubstr("\"winner\""));
  ASSERT_TRUE(c->judge.has_value());
  EXPECT_THAT(devices_.InputOf("judge"), HasSubstr("Answer 2:"));
}

TEST_F(CompeteTest, AJudgeThatHonoursJsonSchemaIsHeldToTheVerdictsSchemaOnACapableDevice) {
  // Two devices serve the judge model; only one advertises json_schema, and only it may judge.
  AddDevice("j-plain", "judge-model", "llama");
  AddDevice("j-schema", "judge-model", "llama", /*active=*/3, 8, true, {"json_schema"});
  devices_.Set("j-schema:1", {.chunks = {R"({"winner": 1, "scores": [9, 5, 4], "reason": "best"})"}});
  auto c = Run({.k = 3, .judge_model = "judge-model"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->method, "judge");
  bool judged = false;
  for (const DeviceCall& call : devices_.calls()) {
    if (call.request.sub_task_id() != "judge") continue;
    judged = true;
    EXPECT_EQ(call.device_id, "j-schema");  // the idle plain device was passed over
    EXPECT_THAT(call.request.structure().response_format_json(), HasSubstr("\"json_schema\""));
    EXPECT_THAT(call.request.structure().response_format_json(), HasSubstr("\"winner\""));
  }
  EXPECT_TRUE(judged);
}

TEST_F(CompeteTest, UnusableJudgeFallsBackToAgreementWithTheReason) {
  AddDevice("j", "judge-model", "llama");
  // A bare number (the old protocol) and prose are malformed verdicts now.
  for (const char* reply : {" they are all lovely", " 3", R"({"winner": 9})"}) {
    devices_.Set("j:1", {.chunks = {reply}});
    auto c = Run({.k = 3, .judge_model = "judge-model"});
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->method, "agreement") << reply;
    EXPECT_FALSE(c->judge.has_value());
    EXPECT_THAT(c->reason, HasSubstr("gave no usable choice (malformed verdict")) << reply;
  }
}

TEST_F(CompeteTest, FailedCandidatesAreLeftOutAndAllFailingIsAnError) {
  devices_.Set("m:1", {.status = absl::InvalidArgumentError("bad")});
  auto c = Run({.k = 3});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->candidates.size(), 2u);
  devices_.Set("l:1", {.status = absl::InvalidArgumentError("bad")});
  devices_.Set("q:1", {.status = absl::InvalidArgumentError("bad")});
  EXPECT_FALSE(Run({.k = 3}).ok());
}

}  // namespace
}  // namespace loom
