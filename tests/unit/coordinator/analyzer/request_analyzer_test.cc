#include "coordinator/analyzer/request_analyzer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

TEST(RequestAnalyzerTest, WorkedExampleCompilesIntoCodeThenDependentReasoning) {
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Translate this Python code to Rust and explain the key differences between the two "
      "implementations.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(a.asks.size(), 2u);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(a.asks[1].category, v1::TASK_CATEGORY_REASONING);
  EXPECT_TRUE(a.asks[1].refers_back);
  EXPECT_THAT(a.reasons[0], HasSubstr("separate asks"));
}

TEST(RequestAnalyzerTest, CodeTranslationIsCodeAndNaturalTranslationIsTranslation) {
  RequestAnalyzer analyzer;
  EXPECT_EQ(analyzer.AnalyzeText("Translate this Java class to Kotlin").asks[0].category,
            v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(analyzer.AnalyzeText("Translate this letter into French").asks[0].category,
            v1::TASK_CATEGORY_TRANSLATION);
}

TEST(RequestAnalyzerTest, SingleTopicPassesThrough) {
  Analysis a = RequestAnalyzer().AnalyzeText("What is the capital of Australia?");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.categories[0].category(), v1::TASK_CATEGORY_FACTUAL);
  EXPECT_THAT(a.reasons[0], HasSubstr("factual"));
}

TEST(RequestAnalyzerTest, PastedMaterialDoesNotBecomeAsks) {
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Give me a TL;DR of this email: Hi team, the release is delayed. Please prioritize fixes "
      "and update the tracker.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_SUMMARIZATION);
  EXPECT_THAT(a.context, HasSubstr("release is delayed"));
}

TEST(RequestAnalyzerTest, EnumeratedAsksOfOneSkillStillCompile) {
  Analysis a = RequestAnalyzer().AnalyzeText(
      "Write a Python function to parse a CSV file. Then write unit tests for it.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
  ASSERT_EQ(a.asks.size(), 2u);
  EXPECT_TRUE(a.asks[1].sequential);
}

TEST(RequestAnalyzerTest, VagueRequestsCompete) {
  EXPECT_EQ(RequestAnalyzer().AnalyzeText("Surprise me.").kind, v1::PLAN_KIND_COMPETE);
}

TEST(RequestAnalyzerTest, ForcedModeAndPinnedModelWin) {
  v1::CompleteRequest r;
  auto* m = r.add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France?");
  r.set_mode(v1::PLAN_KIND_COMPETE);
  Analysis a = RequestAnalyzer().Analyze(r);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPETE);
  EXPECT_THAT(a.reasons[0], HasSubstr("asked for plan kind compete"));
  r.set_mode(v1::PLAN_KIND_UNSPECIFIED);
  m->set_content("Write a poem. Then translate it into German.");
  r.set_family("llama");
  a = RequestAnalyzer().Analyze(r);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_THAT(a.reasons[0], HasSubstr("pinned family llama"));
}

TEST(RequestAnalyzerTest, EstimatesTokensFromPromptAndOutput) {
  Analysis a = RequestAnalyzer().AnalyzeText("hello world", 100);
  EXPECT_EQ(a.estimated_tokens, 2 + 100);
}

TEST(RequestAnalyzerTest, IsDeterministic) {
  RequestAnalyzer analyzer;
  const std::string text = "Summarize this and translate it into Spanish: the sky is blue.";
  Analysis a = analyzer.AnalyzeText(text), b = analyzer.AnalyzeText(text);
  ASSERT_EQ(a.asks.size(), b.asks.size());
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.reasons, b.reasons);
}

}  // namespace
}  // namespace loom
