// Measures the RequestAnalyzer on public labelled prompt sets that are not part of Loom
// (../shared/data/prompts: Dolly, Arena-Hard, BiGGen, BELLE, with label_mappings.json mapping
// their labels to Loom's categories). Run by hand; the data is never copied into the repo.
//
//   build/bin/loom_analyzer_eval ../shared/data/prompts
//
// For each set it prints: category accuracy against the mapping's primary label and against
// primary-or-alternative, per source label; how many requests each plan kind got (multi-part
// items should compile, the rest mostly pass through); and the analyzer's time per prompt.
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "absl/strings/str_format.h"
#include "common/categories.h"
#include "coordinator/request_analyzer.h"
#include "nlohmann/json.hpp"

namespace {

using json = nlohmann::json;

struct Counts {
  int total = 0, primary = 0, any = 0;
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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::cerr << "usage: loom_analyzer_eval DIR [LABEL]  (DIR holds label_mappings.json and the "
                 ".jsonl sets; LABEL prints each prompt of that source label with its plan)\n";
    return 2;
  }
  const std::string dir = argv[1];
  const std::string show = argc == 3 ? argv[2] : "";
  std::ifstream mapping_file(dir + "/label_mappings.json");
  json mappings = json::parse(mapping_file, nullptr, false);
  if (mappings.is_discarded()) {
    std::cerr << "cannot read " << dir << "/label_mappings.json\n";
    return 1;
  }
  loom::RequestAnalyzer analyzer;
  for (auto& [set, spec] : mappings.items()) {
    if (set.front() == '_') continue;
    std::ifstream in(dir + "/" + set);
    const std::string field = spec.value("field", "");
    std::map<std::string, Counts> by_label;
    std::map<std::string, int> kinds;
    Counts all, multi;
    int multi_compiled = 0;
    double micros = 0;
    std::string line;
    while (std::getline(in, line)) {
      json item = json::parse(line, nullptr, false);
      if (item.is_discarded()) continue;
      const std::string label = Field(item, field);
      if (!spec["map"].contains(label)) continue;
      const json& m = spec["map"][label];
      const std::string text = Text(item);
      auto start = std::chrono::steady_clock::now();
      loom::Analysis a = analyzer.AnalyzeText(text);
      micros += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
      kinds[loom::v1::PlanKind_Name(a.kind)]++;
      if (label == show) {
        std::string cats;
        for (const auto& ask : a.asks) cats += loom::CategoryName(ask.category) + " ";
        std::cout << loom::v1::PlanKind_Name(a.kind) << " [" << cats << "] "
                  << text.substr(0, 160) << "\n";
      }
      const std::string primary = m.value("primary", "");
      if (primary == "MULTI") {
        ++multi.total;
        multi_compiled += a.kind == loom::v1::PLAN_KIND_COMPILED;
        continue;
      }
      const std::string got = loom::CategoryName(
          a.asks.size() == 1 ? a.asks[0].category : a.categories[0].category());
      bool alt = false;
      for (const auto& x : m.value("alt", json::array())) alt |= x.get<std::string>() == got;
      Counts& c = by_label[label];
      ++c.total;
      ++all.total;
      if (got == primary) ++c.primary, ++all.primary;
      if (got == primary || alt) ++c.any, ++all.any;
    }
    const int n = all.total + multi.total;
    std::cout << absl::StrFormat("== %s: %d prompts, %.1f us per prompt ==\n", set, n,
                                 n ? micros / n : 0.0);
    std::cout << absl::StrFormat("category: primary %.1f%%, primary-or-alt %.1f%% (%d single-label)\n",
                                 100.0 * all.primary / std::max(1, all.total),
                                 100.0 * all.any / std::max(1, all.total), all.total);
    for (const auto& [label, c] : by_label) {
      std::cout << absl::StrFormat("  %-40s primary %5.1f%%  +alt %5.1f%%  (%d)\n", label,
                                   100.0 * c.primary / c.total, 100.0 * c.any / c.total, c.total);
    }
    if (multi.total) {
      std::cout << absl::StrFormat("multi-part items compiled: %d/%d\n", multi_compiled, multi.total);
    }
    std::cout << "plan kinds:";
    for (const auto& [k, v] : kinds) std::cout << " " << k << "=" << v;
    std::cout << "\n\n";
  }
  return 0;
}
