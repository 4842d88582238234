// Accuracy of the RequestAnalyzer on tests/data/analyzer_prompts.tsv, a labelled set written
// for Loom. Rows with index % 4 == 3 are held out of tuning; both figures are printed.
// LOOM_ANALYZER_MISSES=1 prints the misses of the tuning split (never the held-out one).
// Also: the trained classifier on tests/data/analyzer_multilingual, prompts in 25 languages that
// no training run reads.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/categories.h"
#include "coordinator/analyzer/request_analyzer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

struct Item {
  v1::PlanKind kind;
  std::vector<v1::TaskCategory> categories;
  std::string prompt;
  bool holdout;
};

v1::PlanKind ParseKind(const std::string& s) {
  if (s == "compiled") return v1::PLAN_KIND_COMPILED;
  if (s == "compete") return v1::PLAN_KIND_COMPETE;
  return v1::PLAN_KIND_PASSTHROUGH;
}

std::vector<Item> Load() {
  std::ifstream in(std::string(LOOM_TEST_DATA_DIR) + "/analyzer_prompts.tsv");
  std::vector<Item> items;
  std::string line;
  int index = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols = absl::StrSplit(line, absl::MaxSplits('\t', 2));
    if (cols.size() != 3) continue;
    Item item{ParseKind(cols[0]), {}, cols[2], index % 4 == 3};
    for (absl::string_view c : absl::StrSplit(cols[1], ',')) {
      item.categories.push_back(ParseCategory(c).value_or(v1::TASK_CATEGORY_UNSPECIFIED));
    }
    items.push_back(std::move(item));
    ++index;
  }
  return items;
}

struct Tally {
  int right = 0, total = 0;
  void Add(bool ok) { right += ok; ++total; }
  double Rate() const { return total ? static_cast<double>(right) / total : 1.0; }
  std::string Show() const { return absl::StrFormat("%5.1f%% (%d/%d)", 100 * Rate(), right, total); }
};

struct Report {
  std::map<std::string, Tally> by_category;  // passthrough items, by labelled category
  std::map<std::string, Tally> by_kind;
  Tally compiled_subtasks;                   // compiled items: sub-task categories in order
  Tally overall_kind;
};

Report Evaluate(const std::vector<Item>& items, bool holdout, bool print_misses) {
  RequestAnalyzer analyzer;
  Report r;
  for (const Item& item : items) {
    if (item.holdout != holdout) continue;
    Analysis a = analyzer.AnalyzeText(item.prompt);
    const bool kind_ok = a.kind == item.kind;
    r.by_kind[v1::PlanKind_Name(item.kind)].Add(kind_ok);
    r.overall_kind.Add(kind_ok);
    std::vector<v1::TaskCategory> got;
    for (const Ask& ask : a.asks) got.push_back(ask.category);
    bool category_ok = true;
    if (item.kind == v1::PLAN_KIND_PASSTHROUGH) {
      const v1::TaskCategory predicted =
          a.asks.size() == 1 ? a.asks[0].category : a.categories[0].category();
      category_ok = predicted == item.categories[0];
      r.by_category[CategoryName(item.categories[0])].Add(category_ok);
    } else if (item.kind == v1::PLAN_KIND_COMPILED) {
      category_ok = got == item.categories;
      r.compiled_subtasks.Add(category_ok);
    }
    if (print_misses && (!kind_ok || !category_ok)) {
      std::vector<std::string> names;
      for (auto c : got) names.push_back(CategoryName(c));
      std::cout << "MISS want " << v1::PlanKind_Name(item.kind) << " got "
                << v1::PlanKind_Name(a.kind) << " [" << absl::StrJoin(names, ",") << "] "
                << item.prompt << "\n";
    }
  }
  return r;
}

void Print(const std::string& title, const Report& r) {
  std::cout << "== " << title << " ==\n";
  std::cout << "plan kind overall   " << r.overall_kind.Show() << "\n";
  for (const auto& [kind, t] : r.by_kind) std::cout << "  " << kind << "  " << t.Show() << "\n";
  std::cout << "compiled sub-task categories exact  " << r.compiled_subtasks.Show() << "\n";
  for (const auto& [cat, t] : r.by_category) std::cout << "  category " << cat << "  " << t.Show() << "\n";
}

TEST(AnalyzerAccuracyTest, MeetsTheFloorsOnTunedAndHeldOutPrompts) {
  std::vector<Item> items = Load();
  ASSERT_GE(items.size(), 200u) << "labelled set missing or too small";
  const bool misses = std::getenv("LOOM_ANALYZER_MISSES") != nullptr;
  Report tuned = Evaluate(items, /*holdout=*/false, misses);
  Report held = Evaluate(items, /*holdout=*/true, /*print_misses=*/false);
  Print("tuning split", tuned);
  Print("held-out split", held);

  // Floors. When written, the held-out split reached 96% on plan kind (passthrough 100%,
  // compiled 92%, compete 80%) and 100% per category; each floor leaves room for about one
  // more miss in its group (a group holds 4-15 prompts), so a real regression fails and a
  // single borderline prompt does not. The lexicon was written by the same people as these
  // prompts, so these are optimistic: see bench/analyzer_eval.cc for prompts written by others.
  for (const Report* r : {&tuned, &held}) {
    EXPECT_GE(r->overall_kind.Rate(), 0.88);
    EXPECT_GE(r->by_kind.at("PLAN_KIND_PASSTHROUGH").Rate(), 0.90);
    EXPECT_GE(r->by_kind.at("PLAN_KIND_COMPILED").Rate(), 0.80);
    EXPECT_GE(r->by_kind.at("PLAN_KIND_COMPETE").Rate(), 0.60);
    EXPECT_GE(r->compiled_subtasks.Rate(), 0.75);
    double category_mean = 0;
    for (const auto& [cat, t] : r->by_category) category_mean += t.Rate();
    category_mean /= r->by_category.size();
    EXPECT_GE(category_mean, 0.85);
    for (const auto& [cat, t] : r->by_category) EXPECT_GE(t.Rate(), 0.60) << cat;
  }
}

TEST(AnalyzerAccuracyTest, ReadsPromptsInLanguagesItWasNotTunedOn) {
  // One prompt per line, {"lang", "cat", "prompt"}, written for this test, checked for
  // near-duplicates against every training file, and never
  // trained on (coordinator/analyzer/train.sh does not read tests/data/analyzer_multilingual).
  std::ifstream in(std::string(LOOM_TEST_DATA_DIR) + "/analyzer_multilingual/prompts.jsonl");
  RequestAnalyzer analyzer;
  std::map<std::string, Tally> by_category;
  Tally overall;
  std::string line;
  while (std::getline(in, line)) {
    auto item = nlohmann::json::parse(line);
    const std::string want = item.at("cat");
    Analysis a = analyzer.AnalyzeText(item.at("prompt").get<std::string>());
    const v1::TaskCategory got = a.asks.size() == 1 ? a.asks[0].category : a.categories[0].category();
    const bool ok = CategoryName(got) == want;
    overall.Add(ok);
    by_category[want].Add(ok);
    if (!ok && std::getenv("LOOM_ANALYZER_MISSES") != nullptr) {
      std::cout << "MISS " << item.value("lang", "") << " want " << want << " got "
                << CategoryName(got) << "  " << item.at("prompt").get<std::string>().substr(0, 80) << "\n";
    }
  }
  ASSERT_GE(overall.total, 80) << "multilingual set missing or too small";
  std::cout << "multilingual  " << overall.Show() << "\n";
  for (const auto& [cat, t] : by_category) std::cout << "  category " << cat << "  " << t.Show() << "\n";
  // The model reads 74% of these (60/81); before the lexicon knew the translate, summarize and
  // poem words of these languages, 68%; before prompts in them were in its training data, 59%.
  // The lexicon alone reads 51%. The floor is a regression check on our own writing, not a
  // claim about other people's prompts: for those, see bench/analyzer_eval.cc.
  EXPECT_GE(overall.Rate(), 0.68);
  for (const auto& [cat, t] : by_category) EXPECT_GE(t.Rate(), 0.30) << cat;
}

TEST(AnalyzerAccuracyTest, ReadsAFollowUpWithTheTurnBeforeIt) {
  // {"cat", "previous", "prompt"}: a user's turn, then a short follow-up ("and in javascript?",
  // "再长一点", "now translate it into German"), written for this test before the analyzer
  // read follow-ups with the turn before them, and never trained on.
  std::ifstream in(std::string(LOOM_TEST_DATA_DIR) + "/analyzer_followups/followups.jsonl");
  RequestAnalyzer analyzer;
  Tally with_turn, alone;
  int competed_alone = 0, competed = 0;
  std::string line;
  while (std::getline(in, line)) {
    auto item = nlohmann::json::parse(line);
    const std::string want = item.at("cat");
    v1::CompleteRequest r;
    for (const auto& [role, text] : {std::pair<std::string, std::string>{"user", item.at("previous")},
                                     {"assistant", "(an answer)"}, {"user", item.at("prompt")}}) {
      auto* m = r.add_messages();
      m->set_role(role);
      m->set_content(text);
    }
    Analysis a = analyzer.Analyze(r);
    Analysis b = analyzer.AnalyzeText(item.at("prompt").get<std::string>());
    with_turn.Add(CategoryName(a.categories[0].category()) == want && a.asks.size() == 1 &&
                  CategoryName(a.asks[0].category) == want);
    alone.Add(CategoryName(b.asks[0].category) == want);
    competed += a.kind == v1::PLAN_KIND_COMPETE;
    competed_alone += b.kind == v1::PLAN_KIND_COMPETE;
  }
  ASSERT_GE(with_turn.total, 40) << "follow-up set missing or too small";
  std::cout << "follow-ups with the turn before  " << with_turn.Show() << ", alone  " << alone.Show()
            << "; sent to compete " << competed << " vs " << competed_alone << "\n";
  // 93% (43/46) with the turn before, 48% alone, where 9 of 46 went to compete (most as
  // "short, open-ended"); with the turn, 2 still do, on a real tie between the conversation's
  // skill and the one the classifier reads in the few words ("I don't get the second step").
  // Written by us: a regression floor, not a figure for other people's conversations.
  EXPECT_GE(with_turn.Rate(), 0.85);
  EXPECT_GE(with_turn.Rate(), alone.Rate() + 0.3);
  EXPECT_LE(competed * 3, competed_alone) << "a follow-up continues a conversation; it is not open-ended";
}

TEST(AnalyzerAccuracyTest, ReadsTheTaskASystemMessageSets) {
  // {"cat", "system", "prompt"}: apps that set the task in the system message ("Translate the
  // user's message from English to Japanese." + a sentence to translate), written for this test
  // before the analyzer read system messages, and never trained on.
  std::ifstream in(std::string(LOOM_TEST_DATA_DIR) + "/analyzer_system_tasks/system_tasks.jsonl");
  RequestAnalyzer analyzer;
  Tally with_system, alone;
  std::string line;
  while (std::getline(in, line)) {
    auto item = nlohmann::json::parse(line);
    const std::string want = item.at("cat");
    v1::CompleteRequest r;
    for (const auto& [role, text] : {std::pair<std::string, std::string>{"system", item.at("system")},
                                     {"user", item.at("prompt")}}) {
      auto* m = r.add_messages();
      m->set_role(role);
      m->set_content(text);
    }
    with_system.Add(CategoryName(analyzer.Analyze(r).categories[0].category()) == want);
    alone.Add(CategoryName(analyzer.AnalyzeText(item.at("prompt").get<std::string>()).categories[0].category()) == want);
  }
  ASSERT_GE(with_system.total, 20) << "system-task set missing or too small";
  std::cout << "system tasks with the system message  " << with_system.Show() << ", the user's text alone  "
            << alone.Show() << "\n";
  // 96% (23/24) with the system message read, 25% from the user's text alone. Our own writing:
  // a regression floor. That a generic system message changes nothing is checked on the public
  // sets: loom_analyzer_eval ../shared/data/prompts --system="You are a helpful assistant."
  EXPECT_GE(with_system.Rate(), 0.85);
  EXPECT_GE(with_system.Rate(), alone.Rate() + 0.5);
}

TEST(AnalyzerAccuracyTest, FindsTheStepsOfRequestsInOtherLanguages) {
  // Requests of two or three parts in nine languages, {"lang", "kind", "asks", "prompt"},
  // written for this test after the splitter learnt those languages (13 of 16 compiled on the
  // first run; two gaps it showed were then mended).
  std::ifstream in(std::string(LOOM_TEST_DATA_DIR) + "/analyzer_multilingual/multi_part.jsonl");
  RequestAnalyzer analyzer;
  Tally compiled, counted;
  std::string line;
  while (std::getline(in, line)) {
    auto item = nlohmann::json::parse(line);
    Analysis a = analyzer.AnalyzeText(item.at("prompt").get<std::string>());
    compiled.Add(a.kind == v1::PLAN_KIND_COMPILED);
    counted.Add(a.kind == v1::PLAN_KIND_COMPILED &&
                static_cast<int>(a.asks.size()) == item.at("asks").get<int>());
    if (a.kind != v1::PLAN_KIND_COMPILED && std::getenv("LOOM_ANALYZER_MISSES") != nullptr) {
      std::cout << "MISS " << item.value("lang", "") << " passthrough  "
                << item.at("prompt").get<std::string>().substr(0, 80) << "\n";
    }
  }
  ASSERT_GE(compiled.total, 16) << "multi-part set missing or too small";
  std::cout << "multi-part compiled " << compiled.Show() << ", with the right number of parts "
            << counted.Show() << "\n";
  // When written: 15 of 16 compiled, each with the right number of parts (Dutch "Leg uit" is
  // not read as a verb); before the splitter knew other languages, none. A regression check on
  // our own writing.
  EXPECT_GE(compiled.Rate(), 0.80);
  EXPECT_GE(counted.Rate(), 0.75);
}

}  // namespace
}  // namespace loom
