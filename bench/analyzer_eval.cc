// Measures the RequestAnalyzer on public labelled prompt sets that are not part of Loom
// (../shared/data/prompts: Dolly, Arena-Hard, BiGGen, BELLE, with label_mappings.json mapping
// their labels to Loom's categories). Run by hand; the data is never copied into the repo.
//
//   build/bin/loom_analyzer_eval ../shared/data/prompts [--split=heldout|all] [--show=LABEL]
//
// It runs the analyzer twice, side by side: with the hand-written lexicon deciding categories
// (the analyzer before the classifier, `lexicon`) and with the built-in trained classifier
// (`trained`). The shipped model was trained on the other four fifths of these sets, so the
// default split, `heldout` (training_split.h), is the fair one; `all` includes prompts the model
// was trained on. For each set and analyzer it prints: plan-kind accuracy (multi-part items
// should compile, the rest should not), category accuracy against the mapping's primary label
// and against primary-or-alternative, recall per category, how many fell back to general, and
// the decision time (p50, p99 over prompts; each prompt's fastest of three runs, --runs=N).
// --dump=FILE writes every decision, one line per prompt, to compare two builds.
// --slowest=N lists the N prompts the trained analyzer took longest on.
// --unsure_below=P sets the trained analyzer's confidence floor (AnalyzerOptions::unsure_below). --show=LABEL prints each prompt of that source label.
// --structure=FILE (bench/data/multi_part_structure.json) scores the sub-tasks of multi-part
// prompts against labels by item id: the number of asks, and their categories.
// An item with a "previous" field is a follow-up: it is analysed as a conversation (that user
// turn, an answer, then the prompt), as RequestAnalyzer::Analyze sees one; with a "system"
// field (or --system=TEXT for every item), after that system message.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/categories.h"
#include "coordinator/analyzer/text_features.h"
#include "coordinator/analyzer/training_split.h"
#include "coordinator/analyzer/request_analyzer.h"
#include "nlohmann/json.hpp"

namespace {

using json = nlohmann::json;

struct Rate {
  int n = 0, hit = 0;
  void Add(bool h) { ++n, hit += h; }
  double Pct() const { return n ? 100.0 * hit / n : 0; }
};

struct Result {
  Rate kind, primary, any, multi_compiled;
  Rate structure_count, structure_categories;  // multi-part prompts with --structure labels
  std::map<std::string, Rate> recall;   // by gold primary category
  std::map<std::string, Rate> by_label;  // by source label (primary)
  int general_fallbacks = 0;
  std::vector<double> micros;
};

std::string Field(const json& item, const std::string& field) {
  if (field == "capability/task") {
    return item.value("capability", "") + "/" + item.value("task", "");
  }
  return item.value(field, "");
}

std::string Text(const json& item) {
  for (const char* k : {"instruction", "prompt", "input", "question"}) {
    if (item.contains(k)) return item[k].get<std::string>();
  }
  return "";
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

void Print(const std::string& name, const Result& r, bool by_label) {
  std::cout << absl::StrFormat(
      "  %-8s plan kind %5.1f%% | category primary %5.1f%%, +alt %5.1f%% (n=%d) | general "
      "fallbacks %d | p50 %.1f us, p99 %.1f us",
      name, r.kind.Pct(), r.primary.Pct(), r.any.Pct(), r.primary.n, r.general_fallbacks,
      Percentile(r.micros, 0.5), Percentile(r.micros, 0.99));
  if (r.multi_compiled.n) {
    std::cout << absl::StrFormat(" | multi-part compiled %d/%d", r.multi_compiled.hit, r.multi_compiled.n);
  }
  if (r.structure_count.n) {
    std::cout << absl::StrFormat(" | sub-tasks: count %d/%d, count and categories %d/%d",
                                 r.structure_count.hit, r.structure_count.n,
                                 r.structure_categories.hit, r.structure_categories.n);
  }
  std::cout << "\n           recall:";
  for (const auto& [cat, rate] : r.recall) std::cout << absl::StrFormat(" %s %.0f%% (%d)", cat, rate.Pct(), rate.n);
  std::cout << "\n";
  if (!by_label) return;
  for (const auto& [label, rate] : r.by_label) {
    std::cout << absl::StrFormat("           %-40s %5.1f%% (%d)\n", label, rate.Pct(), rate.n);
  }
}

// One line per prompt and analyzer: everything the decision produced, for diffing two builds.
void Dump(std::ofstream& out, const std::string& name, const std::string& text, const loom::Analysis& a) {
  out << name << " " << loom::v1::PlanKind_Name(a.kind) << " tokens=" << a.estimated_tokens << " [";
  for (const auto& c : a.categories) out << loom::CategoryName(c.category()) << ":" << c.score() << " ";
  out << "] asks:";
  for (const auto& ask : a.asks) {
    out << " {" << loom::CategoryName(ask.category) << " " << loom::Fnv1a64(ask.text) << " "
        << ask.probs.best_p() << " " << ask.explicit_separate << ask.sequential << ask.refers_back;
    for (double score : ask.scores) out << " " << score;
    out << "}";
  }
  out << " context=" << loom::Fnv1a64(a.context) << " reasons:";
  for (const auto& r : a.reasons) out << " " << r << ";";
  std::string head = text.substr(0, 80);  // which prompt a diff line is, at a glance
  std::replace(head.begin(), head.end(), '\n', ' ');
  out << " text=" << head << "\n";
}

// Whether the asks of `a` match a --structure label: {"asks": [counts], "in_order": [[cats]...]
// or "each": [cats]}. Returns {count right, count and categories right}.
std::pair<bool, bool> MatchesStructure(const loom::Analysis& a, const json& label) {
  const int n = a.kind == loom::v1::PLAN_KIND_COMPILED ? static_cast<int>(a.asks.size()) : 1;
  bool count_ok = false;
  for (const auto& c : label.value("asks", json::array())) count_ok |= c.is_number_integer() && c.get<int>() == n;
  if (!count_ok) return {false, false};
  auto accepted = [](const json& cats, const std::string& got) {
    for (const auto& c : cats) {
      if (c.is_string() && c.get<std::string>() == got) return true;
    }
    return false;
  };
  for (int i = 0; i < n; ++i) {
    const std::string got = loom::CategoryName(
        a.kind == loom::v1::PLAN_KIND_COMPILED || a.asks.size() == 1 ? a.asks[i].category
                                                                     : a.categories[0].category());
    const json cats = label.contains("in_order") && !label["in_order"].empty()
                          ? label["in_order"].at(std::min<size_t>(i, label["in_order"].size() - 1))
                          : label.value("each", json::array());
    if (!accepted(cats, got)) return {true, false};
  }
  return {true, true};
}

}  // namespace

// Long on purpose: flags, then one pass over each prompt set printing its report.
int main(int argc, char** argv) {
  std::string dir, split = "heldout", show;
  bool by_label = false;
  int slowest_n = 0;
  int runs = 3;
  std::string dump_path, structure_path, system_prompt;
  loom::AnalyzerOptions trained_options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (absl::StartsWith(arg, "--split=")) {
      split = arg.substr(8);
    } else if (absl::StartsWith(arg, "--show=")) {
      show = arg.substr(7);
    } else if (absl::StartsWith(arg, "--unsure_below=")) {
      trained_options.unsure_below = std::stod(arg.substr(15));
    } else if (absl::StartsWith(arg, "--system=")) {
      system_prompt = arg.substr(9);
    } else if (absl::StartsWith(arg, "--structure=")) {
      structure_path = arg.substr(12);
    } else if (absl::StartsWith(arg, "--dump=")) {
      dump_path = arg.substr(7);
    } else if (absl::StartsWith(arg, "--slowest=")) {
      slowest_n = std::stoi(arg.substr(10));
    } else if (absl::StartsWith(arg, "--runs=")) {
      runs = std::max(1, std::stoi(arg.substr(7)));
    } else if (arg == "--by_label") {
      by_label = true;
    } else if (dir.empty() && arg[0] != '-') {
      dir = arg;
    } else {
      dir.clear();
      break;
    }
  }
  if (dir.empty() || (split != "heldout" && split != "all")) {
    std::cerr << "usage: loom_analyzer_eval DIR [--split=heldout|all] [--by_label] [--show=LABEL]\n"
                 "                          [--slowest=N]  (the N slowest prompts)\n"
                 "                          [--runs=N]  (time each prompt N times, the fastest counts; 3)\n"
                 "                          [--dump=FILE]  (every decision, for diffing builds)\n"
                 "                          [--unsure_below=P]  (the trained analyzer's fallback)\n"
                 "                          [--structure=FILE]  (sub-task labels of multi-part prompts)\n"
                 "                          [--system=TEXT]  (a system message before every prompt)\n"
                 "  DIR holds label_mappings.json and the .jsonl sets (an item's \"previous\":\n"
                 "  the user turn before it, analysed as a conversation)\n";
    return 2;
  }
  std::ifstream mapping_file(dir + "/label_mappings.json");
  json mappings = json::parse(mapping_file, nullptr, false);
  if (mappings.is_discarded()) {
    std::cerr << "cannot read " << dir << "/label_mappings.json\n";
    return 1;
  }
  json structure = json::object();
  if (!structure_path.empty()) {
    std::ifstream f(structure_path);
    structure = json::parse(f, nullptr, false);
    if (structure.is_discarded() || !structure.is_object()) {
      std::cerr << "cannot read " << structure_path << "\n";
      return 1;
    }
  }
  loom::AnalyzerOptions lexicon_options;
  lexicon_options.lexicon_only = true;
  const std::vector<std::pair<std::string, loom::RequestAnalyzer>> analyzers = {
      {"lexicon", loom::RequestAnalyzer(lexicon_options)}, {"trained", loom::RequestAnalyzer(trained_options)}};
  std::map<std::string, Result> overall;
  std::ofstream dump;
  if (!dump_path.empty()) dump.open(dump_path, std::ios::trunc);
  std::vector<std::pair<double, std::string>> slowest;  // the trained analyzer's, for --slowest
  std::cout << "split: " << split << "\n";
  for (auto& [set, spec] : mappings.items()) {
    if (set.front() == '_') continue;
    std::ifstream in(dir + "/" + set);
    const std::string field = spec.value("field", "");
    std::map<std::string, Result> results;
    std::string line;
    while (std::getline(in, line)) {
      json item = json::parse(line, nullptr, false);
      if (item.is_discarded()) continue;
      const std::string label = Field(item, field);
      if (!spec["map"].contains(label)) continue;
      const json& m = spec["map"][label];
      const std::string text = Text(item);
      if (split == "heldout" && !loom::InHeldOutSplit(text)) continue;
      const std::string primary = m.value("primary", "");
      // A follow-up ("previous": the user's turn before it) is analysed as the conversation.
      // "system": the request's system message (an app that sets the task there).
      std::optional<loom::v1::CompleteRequest> conversation;
      auto add = [&](const std::string& role, const std::string& content) {
        auto* message = conversation->add_messages();
        message->set_role(role);
        message->set_content(content);
      };
      const bool has_previous = item.contains("previous") && item["previous"].is_string();
      const bool has_system = item.contains("system") && item["system"].is_string();
      if (has_previous || has_system || !system_prompt.empty()) {
        conversation.emplace();
        if (has_system) add("system", item["system"]);
        else if (!system_prompt.empty()) add("system", system_prompt);
        if (has_previous) {
          add("user", item["previous"]);
          add("assistant", "(an answer)");
        }
        add("user", text);
      }
      for (const auto& [name, analyzer] : analyzers) {
        // The decision time of a prompt is the fastest of `runs` (three) runs: its own cost, without the
        // first run's cold caches or a preemption.
        loom::Analysis a;
        double us = 1e18;
        for (int run = 0; run < runs; ++run) {
          auto start = std::chrono::steady_clock::now();
          a = conversation ? analyzer.Analyze(*conversation) : analyzer.AnalyzeText(text);
          us = std::min(us, std::chrono::duration<double, std::micro>(
                                std::chrono::steady_clock::now() - start).count());
        }
        if (name == "trained" && slowest_n > 0) slowest.emplace_back(us, text);
        if (dump.is_open()) Dump(dump, name, text, a);
        for (Result* r : {&results[name], &overall[name]}) {
          r->micros.push_back(us);
          if (primary == "MULTI") {
            r->kind.Add(a.kind == loom::v1::PLAN_KIND_COMPILED);
            r->multi_compiled.Add(a.kind == loom::v1::PLAN_KIND_COMPILED);
            const std::string id = item.value("id", "");
            if (structure.contains(set) && structure[set].contains(id)) {
              const auto [count_ok, categories_ok] = MatchesStructure(a, structure[set][id]);
              r->structure_count.Add(count_ok);
              r->structure_categories.Add(categories_ok);
            }
            continue;
          }
          r->kind.Add(a.kind != loom::v1::PLAN_KIND_COMPILED);
          const std::string got = loom::CategoryName(
              a.asks.size() == 1 ? a.asks[0].category : a.categories[0].category());
          bool alt = false;
          for (const auto& x : m.value("alt", json::array())) alt |= x.get<std::string>() == got;
          r->primary.Add(got == primary);
          r->any.Add(got == primary || alt);
          r->recall[primary].Add(got == primary);
          r->by_label[label].Add(got == primary);
          const bool fell_back = a.kind == loom::v1::PLAN_KIND_PASSTHROUGH && !a.reasons.empty() &&
                                 absl::StrContains(a.reasons.back(), "classifier unsure");
          r->general_fallbacks += fell_back;
        }
        if (label == show) {
          std::string cats;
          for (const auto& ask : a.asks) cats += loom::CategoryName(ask.category) + " ";
          std::cout << name << " " << loom::v1::PlanKind_Name(a.kind) << " [" << cats << "] "
                    << text.substr(0, 160) << "\n";
        }
      }
    }
    std::cout << "== " << set << " ==\n";
    for (const auto& [name, analyzer] : analyzers) Print(name, results[name], by_label);
  }
  std::cout << "== all sets ==\n";
  for (const auto& [name, analyzer] : analyzers) Print(name, overall[name], false);
  std::sort(slowest.rbegin(), slowest.rend());
  for (size_t i = 0; i < slowest.size() && i < static_cast<size_t>(slowest_n); ++i) {
    std::string head = slowest[i].second.substr(0, 100);
    std::replace(head.begin(), head.end(), '\n', ' ');
    std::cout << absl::StrFormat("slow %7.1f us  %6d bytes  %s\n", slowest[i].first,
                                 slowest[i].second.size(), head);
  }
  return 0;
}
