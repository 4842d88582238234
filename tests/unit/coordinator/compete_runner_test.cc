#include "coordinator/compete_runner.h"

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
  EXPECT_EQ(CompeteRunner::ParseJudgeChoice("2", 3), 2);
  EXPECT_EQ(CompeteRunner::ParseJudgeChoice("Answer 3 is best.", 3), 3);
  EXPECT_EQ(CompeteRunner::ParseJudgeChoice("4", 3), std::nullopt);
  EXPECT_EQ(CompeteRunner::ParseJudgeChoice("none of them", 3), std::nullopt);
  EXPECT_EQ(CompeteRunner::ParseJudgeChoice("0", 3), std::nullopt);
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
        .Run("req", {User("Describe the sea")}, v1::TASK_CATEGORY_CREATIVE, 64, 64,
             absl::Now() + absl::Seconds(10), &cancel_, Collect(), &log_);
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
  devices_.Set("j:1", {.chunks = {" 3"}});
  auto c = Run({.k = 3, .judge_model = "judge-model"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->method, "judge");
  EXPECT_EQ(c->winner, 2);
  ASSERT_TRUE(c->judge.has_value());
  EXPECT_THAT(devices_.InputOf("judge"), HasSubstr("Answer 2:"));
}

TEST_F(CompeteTest, UnusableJudgeFallsBackToAgreementWithTheReason) {
  AddDevice("j", "judge-model", "llama");
  devices_.Set("j:1", {.chunks = {" they are all lovely"}});
  auto c = Run({.k = 3, .judge_model = "judge-model"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->method, "agreement");
  EXPECT_FALSE(c->judge.has_value());
  EXPECT_THAT(c->reason, HasSubstr("gave no usable choice"));
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
