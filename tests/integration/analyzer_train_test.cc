// loom_analyzer_train, the tool that makes the model every binary ships with, run as a process on a
// small labelled folder the test writes itself (the real one, ../shared/data, is not in the
// repository): the same inputs give the same bytes, the model loads, the audit names the prompts
// of one set that the others would label otherwise, and bad input is refused with a clear error.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "common/utf8.h"
#include "coordinator/analyzer/category_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void Write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  ASSERT_TRUE(f.good()) << path;
}

// Word lists that make each category easy to tell apart, so a few dozen rows train a model.
struct Style {
  const char* category;
  const char* label;  // the public set's own label, mapped by label_mappings.json
  std::vector<std::string> openings;
};

const std::vector<Style>& Styles() {
  static const auto* styles = new std::vector<Style>{
      {"code", "coding", {"write a python function that", "fix this javascript bug where", "refactor the rust code that"}},
      {"reasoning", "math", {"solve for x when", "prove that the sum of", "how many apples remain if"}},
      {"creative", "creative_writing", {"write a poem about", "tell a short story about", "invent a fairy tale about"}},
  };
  return *styles;
}

// Past the 300 bytes the errors file keeps of a prompt, with no cut on a character boundary
// there by chance (3 bytes a character, after a 55-byte ASCII head).
std::string LongChineseTail() {
  std::string tail;
  for (int i = 0; i < 100; ++i) tail += "钟";
  return tail;
}

class AnalyzerTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir_, "/shared/prompts ", dir_, "/shared/train").c_str()), 0);
    const std::vector<std::string> topics = {"rivers", "cats", "trains", "winter", "markets", "lamps",
                                             "bridges", "tea", "clocks", "gardens", "ships", "maps"};
    std::string set;
    for (const Style& s : Styles()) {
      for (const std::string& opening : s.openings) {
        for (const std::string& topic : topics) {
          set += absl::StrCat(R"({"subcategory": ")", s.label, R"(", "prompt": ")", opening, " ", topic, "\"}\n");
        }
      }
    }
    Write(dir_ + "/shared/prompts/sample.jsonl", set);
    Write(dir_ + "/shared/prompts/label_mappings.json", R"({"_about": "test",
      "sample.jsonl": {"field": "subcategory", "map": {
        "coding": {"primary": "code", "alt": []},
        "math": {"primary": "reasoning", "alt": []},
        "creative_writing": {"primary": "creative", "alt": []}}}})");
    std::string gsm;
    for (int i = 0; i < 20; ++i) gsm += absl::StrCat(R"({"question": "Tom has )", i, R"( apples and buys 3 more. How many now?"})", "\n");
    Write(dir_ + "/shared/train/gsm8k_train_questions.jsonl", gsm);
    // Ours: two rows in the sample's style, and one whose label the sample would teach otherwise.
    Write(dir_ + "/authored.jsonl",
          "{\"category\": \"code\", \"text\": \"my javascript keeps crashing on startup, fix it\"}\n"
          "{\"category\": \"creative\", \"text\": \"a poem for my sister, about autumn rain\"}\n"
          "{\"category\": \"reasoning\", \"text\": \"a python function please, one that reads the clock logs" +
              LongChineseTail() + "\"}\n");
  }

  CommandResult Train(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--shared=" + dir_ + "/shared", "--authored=" + dir_ + "/authored.jsonl",
                                     "--bits=12", "--epochs=4"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCommand("loom_analyzer_train", args, absl::Seconds(120));
  }

  std::string dir_;
};

TEST_F(AnalyzerTrainTest, SameInputsGiveTheSameModelAndItLoads) {
  CommandResult a = Train({"--out=" + dir_ + "/a.lcm"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  CommandResult b = Train({"--out=" + dir_ + "/b.lcm"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_THAT(a.out, HasSubstr("== held-out split"));
  EXPECT_THAT(a.out, HasSubstr("sample.jsonl"));
  const std::string first = ReadFile(dir_ + "/a.lcm");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, ReadFile(dir_ + "/b.lcm")) << "training must be deterministic";
  auto report = [](const std::string& out) { return out.substr(0, out.find("wrote ")); };  // names its file
  EXPECT_EQ(report(a.out), report(b.out));

  auto model = CategoryModel::FromBytes(first);
  ASSERT_TRUE(model.ok()) << model.status();
  const CategoryProbs p = (*model)->Predict("write a poem about the sea at night");
  double sum = 0;
  for (float x : p.p) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-3);
}

TEST_F(AnalyzerTrainTest, AuditListsOurLabelsTheOtherSetsTeachOtherwise) {
  const std::string errors = dir_ + "/errors.tsv";
  CommandResult r = Train({"--audit=authored", "--errors=" + errors});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("== audit: trained without authored, scored on all of it =="));
  bool found = false;
  const std::string listed = ReadFile(errors);
  EXPECT_TRUE(IsValidUtf8(listed)) << "a prompt is cut between whole characters";
  for (absl::string_view line : absl::StrSplit(listed, '\n', absl::SkipEmpty())) {
    std::vector<std::string> cols = absl::StrSplit(line, '\t');
    ASSERT_EQ(cols.size(), 6u) << line;  // report, set, gold, predicted, p(predicted), text
    const double p = std::stod(cols[4]);
    EXPECT_GT(p, 0.0);
    EXPECT_LE(p, 1.0);
    if (cols[0] == "audit authored" && absl::StartsWith(cols[5], "a python function please, one that reads the clock logs")) {
      EXPECT_EQ(cols[2], "reasoning");
      EXPECT_EQ(cols[3], "code");
      found = true;
    }
  }
  EXPECT_TRUE(found) << "the row labelled against the sample's style is listed";
}

TEST_F(AnalyzerTrainTest, LeavesOutOurPromptsThatCopyAPublicOne) {
  Write(dir_ + "/authored.jsonl",
        "{\"category\": \"creative\", \"text\": \"Write a poem about   RIVERS\"}\n"  // the sample's, re-spaced
        "{\"category\": \"creative\", \"text\": \"write a limerick about a sleepy owl\"}\n");
  CommandResult r = Train({});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("left out (1.00 like sample.jsonl): Write a poem about   RIVERS"));
  EXPECT_THAT(r.err, Not(HasSubstr("sleepy owl")));
  EXPECT_THAT(r.out, HasSubstr("authored=1 "));
  EXPECT_THAT(r.out, HasSubstr("left out 1 of our prompts that near-copy a public one"));

  CommandResult kept = Train({"--max_overlap=1.01"});  // nothing is that close: both stay
  ASSERT_EQ(kept.exit_code, 0) << kept.err;
  EXPECT_THAT(kept.out, HasSubstr("authored=2 "));
}

TEST_F(AnalyzerTrainTest, RefusesBadInputWithAClearError) {
  CommandResult no_set = Train({"--audit=nosuchset"});
  EXPECT_EQ(no_set.exit_code, 1);
  EXPECT_THAT(no_set.err, HasSubstr("--audit=nosuchset: no prompts from that set"));

  CommandResult no_shared = RunCommand("loom_analyzer_train", {});
  EXPECT_EQ(no_shared.exit_code, 2);
  EXPECT_THAT(no_shared.err, HasSubstr("--shared"));

  Write(dir_ + "/authored.jsonl", "{\"category\": \"poetry\", \"text\": \"a row with no such category\"}\n");
  CommandResult bad_row = Train({});
  EXPECT_EQ(bad_row.exit_code, 1);
  EXPECT_THAT(bad_row.err, HasSubstr("bad row"));
}

}  // namespace
}  // namespace loom::testing
