#include "coordinator/analyzer/category_model.h"

#include <cmath>
#include <fstream>
#include <numeric>

#include "absl/strings/match.h"
#include "common/categories.h"
#include "coordinator/analyzer/text_features.h"
#include "coordinator/analyzer/request_analyzer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/category_models.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

constexpr int kBits = kTestModelBits;

int IndexOf(v1::TaskCategory c) {
  for (int i = 0; i < kModelClasses; ++i) {
    if (kAllCategories[i] == c) return i;
  }
  return -1;
}

TEST(CategoryModelTest, BuiltinModelLoadsAndGivesProbabilitiesThatSumToOne) {
  const CategoryModel& m = CategoryModel::Builtin();
  EXPECT_EQ(m.hash_bits(), 17);
  const std::string long_text(20000, 'x');
  for (const char* text : {"", "hi", "Write a haiku about rain", "把下面这句话翻译成英文：我明天去北京。",
                           long_text.c_str()}) {
    CategoryProbs p = m.Predict(text);
    const float sum = std::accumulate(p.p.begin(), p.p.end(), 0.0f);
    EXPECT_NEAR(sum, 1.0f, 1e-4) << text;
    for (float x : p.p) EXPECT_GE(x, 0.0f);
    EXPECT_GE(p.margin(), 0.0f);
    EXPECT_LE(p.entropy(), 3.0f + 1e-4);
  }
}

TEST(CategoryModelTest, BuiltinModelReadsPromptsItWasNotWrittenAgainst) {
  // Prompts that appear in no training file, one per category, in several voices.
  const CategoryModel& m = CategoryModel::Builtin();
  EXPECT_EQ(m.Predict("pls fix my rust borrow checker error, code: let s = v[0]; v.push(1);").best(),
            v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(m.Predict("Traduisez en allemand : je voudrais réserver une chambre.").best(),
            v1::TASK_CATEGORY_TRANSLATION);
  EXPECT_EQ(m.Predict("写一首关于大海的诗").best(), v1::TASK_CATEGORY_CREATIVE);
  EXPECT_EQ(m.Predict("If 3 pencils cost 45 cents, how much do 8 pencils cost?").best(),
            v1::TASK_CATEGORY_REASONING);
}

TEST(CategoryModelTest, EncodedModelRoundTrips) {
  std::array<float, kModelClasses> bias{};
  bias[IndexOf(v1::TASK_CATEGORY_TRANSLATION)] = 3;
  auto m = CategoryModel::FromBytes(BiasOnlyModelBytes(bias));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->hash_bits(), kBits);
  CategoryProbs p = (*m)->Predict("anything at all");
  EXPECT_EQ(p.best(), v1::TASK_CATEGORY_TRANSLATION);
  // e^3 / (e^3 + 7)
  EXPECT_NEAR(p.best_p(), std::exp(3.0) / (std::exp(3.0) + 7), 1e-3);
}

TEST(CategoryModelTest, RefusesCorruptFilesWithAClearError) {
  const std::string good = BiasOnlyModelBytes({});
  ASSERT_TRUE(CategoryModel::FromBytes(good).ok());

  auto expect_refused = [](const std::string& bytes, const std::string& why) {
    auto m = CategoryModel::FromBytes(bytes);
    ASSERT_FALSE(m.ok()) << why;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << why;
    EXPECT_THAT(std::string(m.status().message()), HasSubstr(why));
  };
  expect_refused("", "too short");
  expect_refused(good.substr(0, good.size() - 100), "truncated");
  std::string magic = good;
  magic[0] = 'X';
  expect_refused(magic, "bad magic");
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x01;
  expect_refused(flipped, "checksum mismatch");
  std::string version = good;
  version[12] = 99;  // feature version (after the magic and the format)
  expect_refused(version, "feature version");

  auto missing = CategoryModel::FromFile("/nonexistent/model.lcm");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(TextFeaturesTest, DeterministicDistinctAndBounded) {
  std::vector<uint32_t> a, b;
  ExtractFeatures("Summarize this: the cat sat on the mat. The cat sat.", 12, &a);
  ExtractFeatures("Summarize this: the cat sat on the mat. The cat sat.", 12, &b);
  EXPECT_EQ(a, b);
  std::vector<uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "a bucket appears twice";
  for (uint32_t id : a) EXPECT_LT(id, 1u << 12);
  // A long prompt is read through its head and tail only: its middle changes nothing.
  const std::string head(2000, 'a'), tail(500, 'b');
  ExtractFeatures(head + " middle one " + tail, 12, &a);
  ExtractFeatures(head + " another middle " + tail, 12, &b);
  EXPECT_EQ(a, b);
  // Chinese has no spaces: characters are tokens, so two different sentences differ.
  ExtractFeatures("我明天去北京", 12, &a);
  ExtractFeatures("我明天去上海", 12, &b);
  EXPECT_NE(a, b);
  // Malformed UTF-8 is read, not crashed on.
  ExtractFeatures(std::string("\xff\xfe\xc3", 3), 12, &a);
}

TEST(TextFeaturesTest, TheWindowReadsAShortLastLineWhole) {
  std::string document;
  for (int i = 0; i < 40; ++i) document += "Line " + std::to_string(i) + " of the pasted minutes.\n";
  // A closing instruction longer than kTailBytes but within kTailLineBytes: read whole.
  const std::string closing =
      "Summarize the above for the board in five bullet points, keeping every figure, the names "
      "of the people who own each action, and the dates they promised, and leave out the jokes.";
  ASSERT_GT(closing.size(), kTailBytes);
  ASSERT_LT(closing.size(), kTailLineBytes);
  EXPECT_THAT(ReadWindow(document + closing + "\n"), HasSubstr(closing));
  EXPECT_EQ(TailStart(document + closing), document.size());
  // A last line longer than that: only its end, on a character boundary.
  const std::string paragraph = std::string(300, 'x') + "\xc3\xa9" + std::string(kTailBytes - 1, 'y');
  const size_t tail = TailStart(document + paragraph);
  EXPECT_EQ(tail, document.size() + 302) << "not inside the two-byte character";
  // A short text is read whole; a text whose head and last line meet too.
  EXPECT_EQ(ReadWindow("short"), "short");
  const std::string meet = std::string(kHeadBytes - 80, 'a') + "\n" + std::string(kTailLineBytes - 6, 'b');
  ASSERT_GT(meet.size(), kHeadBytes + kTailBytes);
  EXPECT_EQ(ReadWindow(meet), meet);
}

TEST(ClassifierDecisionTest, UnsureClassifierFallsBackToGeneralAndSaysWhy) {
  // Equal biases: every category 1/8, far below the confidence floor.
  auto m = BiasOnlyModel({});
  AnalyzerOptions options;
  options.model = m.get();
  Analysis a = RequestAnalyzer(options).AnalyzeText("Describe the mood of the painting.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_GENERAL);
  EXPECT_THAT(a.reasons.back(), HasSubstr("classifier unsure"));
}

TEST(ClassifierDecisionTest, TwoNearlyTiedCategoriesCompete) {
  std::array<float, kModelClasses> bias{};
  bias[IndexOf(v1::TASK_CATEGORY_CODE)] = 5;
  bias[IndexOf(v1::TASK_CATEGORY_REASONING)] = 5;
  auto m = BiasOnlyModel(bias);
  AnalyzerOptions options;
  options.model = m.get();
  Analysis a = RequestAnalyzer(options).AnalyzeText("Describe the mood of the painting.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPETE);
  EXPECT_THAT(a.reasons.back(), HasSubstr("no category clearly ahead"));
}

TEST(ClassifierDecisionTest, ConfidentClassifierDecidesAndTheReasonNamesIt) {
  std::array<float, kModelClasses> bias{};
  bias[IndexOf(v1::TASK_CATEGORY_STRUCTURED)] = 6;
  auto m = BiasOnlyModel(bias);
  AnalyzerOptions options;
  options.model = m.get();
  // The lexicon calls this creative; the (rigged) classifier decides.
  Analysis a = RequestAnalyzer(options).AnalyzeText("Write a poem about the sea.");
  EXPECT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(a.asks[0].category, v1::TASK_CATEGORY_STRUCTURED);
  EXPECT_EQ(a.categories[0].category(), v1::TASK_CATEGORY_STRUCTURED);
  EXPECT_THAT(a.reasons.back(), HasSubstr("classifier"));
  options.lexicon_only = true;
  EXPECT_EQ(RequestAnalyzer(options).AnalyzeText("Write a poem about the sea.").asks[0].category,
            v1::TASK_CATEGORY_CREATIVE);
}

}  // namespace
}  // namespace loom
