// Trains the category classifier (coordinator/analyzer/category_model.h) and reports how well
// it does on prompts it was not trained on. Deterministic: the same inputs give the same file.
// Run through coordinator/analyzer/train.sh, which names the inputs:
//
//   loom_analyzer_train --shared ../shared/data
//       --authored coordinator/analyzer/data/authored_prompts.jsonl
//       --project tests/data/analyzer_prompts.tsv --out coordinator/analyzer/model/category_model.lcm
//
// Inputs (the public sets are read where they are; nothing from them is copied):
//  - shared/prompts/*.jsonl mapped by label_mappings.json ("primary", with "alt" as soft labels);
//    BiGGen's multi-part items are skipped (they have no single category);
//  - shared/train/gsm8k_train_questions.jsonl, every k-th question up to --gsm8k_max (reasoning);
//  - prompts written for Loom in other people's voices (--authored, JSONL text/category);
//  - the tuning rows of the project's own analyzer test set (--project; its held-out rows,
//    index % 4 == 3, are never read).
// A fifth of every set (training_split.h) is held out; the report gives accuracy on it per set,
// per category and as a confusion matrix. --loso also trains once without each public set and
// scores that whole set: the figure for prompts from a source the model never saw.
// --export_fasttext=DIR writes the same splits as fastText input files, for
// bench/fasttext_compare.sh (the comparison MODEL.md reports).
// Our prompts (authored, project) that near-copy a public one (--max_overlap) are left out and
// named: trained on, they would carry that public prompt into its own set's held-out and
// leave-one-set-out scores.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/categories.h"
#include "common/utf8.h"
#include "coordinator/analyzer/category_model.h"
#include "coordinator/analyzer/text_features.h"
#include "coordinator/analyzer/training_split.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, shared, "", "the shared data folder (holds prompts/ and train/)");
ABSL_FLAG(std::string, authored, "", "JSONL of prompts written for Loom: {text, category}");
ABSL_FLAG(std::string, project, "", "the project's analyzer_prompts.tsv (tuning rows only)");
ABSL_FLAG(std::string, out, "", "where to write the model (nothing written when empty)");
ABSL_FLAG(int, bits, 17, "hash bits: the model has 2^bits rows of 8 weights");
ABSL_FLAG(int, epochs, 12, "passes over the training set");
ABSL_FLAG(double, learning_rate, 0.1, "AdaGrad step");
ABSL_FLAG(double, l2, 1e-4, "L2 penalty on the weights a step touches");
ABSL_FLAG(double, alt_mass, 0, "target mass spread over a prompt's alternative labels");
ABSL_FLAG(int, gsm8k_max, 400, "GSM8K questions used at most (it is one style of reasoning)");
ABSL_FLAG(bool, lexicon, true, "give the model the hand-written lexicon's scores as inputs");
ABSL_FLAG(bool, loso, false, "also train without each public set and score that set");
ABSL_FLAG(std::string, errors, "",
          "append each prompt scored wrong to this file (TSV: report, set, gold, predicted, "
          "p(predicted), text)");
ABSL_FLAG(std::string, audit, "",
          "also train without this set and score all of it: with 'authored', the labels we wrote "
          "that the other sets would teach otherwise (read them with --errors)");
ABSL_FLAG(std::string, export_fasttext, "",
          "write the held-out and leave-one-set-out splits here as fastText files, then stop");
ABSL_FLAG(double, max_overlap, 0.6,
          "leave out our prompts whose character 5-grams overlap a public prompt's this much "
          "(Jaccard) or more");
ABSL_FLAG(bool, all, false, "train on the held-out split too (the shipped model: after reporting)");

namespace {

using json = nlohmann::json;
using loom::kModelClasses;

struct Example {
  std::string text;
  std::string set;
  int label = 0;
  uint32_t alt_mask = 0;  // bit c: category index c is also a defensible label
  bool held_out = false;
  std::vector<uint32_t> ids;
  std::array<float, kModelClasses> lexicon{};
};

int Index(const std::string& name) {
  auto c = loom::ParseCategory(name);
  if (!c) return -1;
  for (int i = 0; i < kModelClasses; ++i) {
    if (loom::kAllCategories[i] == *c) return i;
  }
  return -1;
}

std::string NameOf(int i) { return loom::CategoryName(loom::kAllCategories[i]); }

std::string Field(const json& item, const std::string& field) {
  if (field == "capability/task") return item.value("capability", "") + "/" + item.value("task", "");
  return item.value(field, "");
}

std::string PromptText(const json& item) {
  for (const char* k : {"instruction", "prompt", "input", "question", "text"}) {
    if (item.contains(k) && item[k].is_string()) return item[k].get<std::string>();
  }
  return "";
}

bool ReadJsonl(const std::string& path, std::vector<json>* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out->push_back(std::move(j));
  }
  return true;
}

// The sets read from ../shared/data/prompts, each scored on its own (not the prompts written for
// Loom or GSM8K's questions).
bool IsPublicSet(const std::string& set) {
  return set != "authored" && set != "project" && set.rfind("gsm8k", 0) != 0;
}

// One fastText line: "__label__CATEGORY text", the text lower-cased (ASCII) on one line, and each
// ideograph or kana a word of its own (fastText splits on spaces only; Chinese has none).
std::string FastTextLine(const Example& e) {
  std::string out = "__label__" + NameOf(e.label) + " ";
  for (size_t i = 0; i < e.text.size();) {
    const unsigned char c = static_cast<unsigned char>(e.text[i]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    len = std::min(len, e.text.size() - i);
    if (len == 1) {
      out += c == '\n' || c == '\t' || c == '\r' ? ' ' : static_cast<char>(std::tolower(c));
    } else if (len == 3 && c >= 0xE3 && c <= 0xE9) {  // U+3000..U+9FFF: CJK, kana
      absl::StrAppend(&out, " ", e.text.substr(i, len), " ");
    } else {
      out += e.text.substr(i, len);
    }
    i += len;
  }
  return out + "\n";
}

bool ExportFastText(const std::string& dir, const std::vector<Example>& examples,
                    const std::map<std::string, int>& per_set) {
  auto write = [&](const std::string& name, auto keep) {
    std::ofstream f(dir + "/" + name, std::ios::trunc);
    for (const Example& e : examples) {
      if (keep(e)) f << FastTextLine(e);
    }
    return static_cast<bool>(f.flush());
  };
  bool ok = write("heldout.train", [](const Example& e) { return !e.held_out; });
  for (const auto& entry : per_set) {
    const std::string& set = entry.first;
    if (!IsPublicSet(set)) continue;
    ok &= write("heldout." + set + ".test", [&](const Example& e) { return e.held_out && e.set == set; });
    ok &= write("loso." + set + ".train", [&](const Example& e) { return e.set != set; });
    ok &= write("loso." + set + ".test", [&](const Example& e) { return e.set == set; });
  }
  if (!ok) std::cerr << "cannot write the fastText files in " << dir << "\n";
  return ok;
}

bool LoadPublic(const std::string& dir, std::vector<Example>* out) {
  std::ifstream mf(dir + "/prompts/label_mappings.json");
  json mappings = json::parse(mf, nullptr, false);
  if (mappings.is_discarded()) {
    std::cerr << "cannot read " << dir << "/prompts/label_mappings.json\n";
    return false;
  }
  for (auto& [set, spec] : mappings.items()) {
    if (set.front() == '_') continue;
    std::vector<json> items;
    if (!ReadJsonl(dir + "/prompts/" + set, &items)) {
      std::cerr << "cannot read " << dir << "/prompts/" << set << "\n";
      return false;
    }
    const std::string field = spec.value("field", "");
    for (const json& item : items) {
      const std::string label = Field(item, field);
      if (!spec["map"].contains(label)) continue;
      const json& m = spec["map"][label];
      Example e;
      e.label = Index(m.value("primary", ""));
      if (e.label < 0) continue;  // MULTI
      for (const auto& a : m.value("alt", json::array())) {
        const int i = Index(a.get<std::string>());
        if (i >= 0) e.alt_mask |= 1u << i;
      }
      e.text = PromptText(item);
      e.set = set;
      out->push_back(std::move(e));
    }
  }
  std::vector<json> gsm;
  if (!ReadJsonl(dir + "/train/gsm8k_train_questions.jsonl", &gsm)) {
    std::cerr << "cannot read " << dir << "/train/gsm8k_train_questions.jsonl\n";
    return false;
  }
  const size_t max = absl::GetFlag(FLAGS_gsm8k_max);
  const size_t step = std::max<size_t>(1, gsm.size() / std::max<size_t>(max, 1));
  for (size_t i = 0; i < gsm.size() && i / step < max; i += step) {
    Example e;
    e.text = PromptText(gsm[i]);
    e.label = Index("reasoning");
    e.set = "gsm8k_train_questions.jsonl";
    out->push_back(std::move(e));
  }
  return true;
}

bool LoadAuthored(const std::string& path, std::vector<Example>* out) {
  std::vector<json> items;
  if (!ReadJsonl(path, &items)) {
    std::cerr << "cannot read " << path << "\n";
    return false;
  }
  for (const json& item : items) {
    Example e;
    e.text = PromptText(item);
    e.label = Index(item.value("category", ""));
    if (e.label < 0 || e.text.empty()) {
      std::cerr << path << ": bad row " << item.dump() << "\n";
      return false;
    }
    for (const auto& a : item.value("alt", json::array())) e.alt_mask |= 1u << Index(a.get<std::string>());
    e.set = "authored";
    out->push_back(std::move(e));
  }
  return true;
}

bool LoadProject(const std::string& path, std::vector<Example>* out) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << "cannot read " << path << "\n";
    return false;
  }
  std::string line;
  int index = -1;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    ++index;
    if (index % 4 == 3) continue;  // the test's held-out rows
    std::vector<std::string> cols = absl::StrSplit(line, absl::MaxSplits('\t', 2));
    if (cols.size() != 3 || cols[0] != "passthrough") continue;
    Example e;
    e.label = Index(cols[1]);
    if (e.label < 0) continue;
    e.text = cols[2];
    e.set = "project";
    out->push_back(std::move(e));
  }
  return true;
}

uint64_t SplitMix(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Multinomial logistic regression by AdaGrad over `train`, class-balanced.
std::string Train(const std::vector<const Example*>& train, int bits) {
  const size_t rows = size_t{1} << bits;
  std::vector<float> w(rows * kModelClasses, 0), g(rows * kModelClasses, 0);
  std::array<float, kModelClasses> b{}, gb{};
  std::vector<float> lw(kModelClasses * kModelClasses, 0), lg(kModelClasses * kModelClasses, 0);
  std::array<int, kModelClasses> count{};
  for (const Example* e : train) ++count[e->label];
  std::array<float, kModelClasses> class_weight{};
  for (int c = 0; c < kModelClasses; ++c) {
    class_weight[c] =
        count[c] ? std::sqrt(static_cast<float>(train.size()) / (kModelClasses * count[c])) : 0;
  }
  const float lr = absl::GetFlag(FLAGS_learning_rate), l2 = absl::GetFlag(FLAGS_l2),
              alt_mass = absl::GetFlag(FLAGS_alt_mass);
  std::vector<size_t> order(train.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  uint64_t seed = 42;
  for (int epoch = 0; epoch < absl::GetFlag(FLAGS_epochs); ++epoch) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[SplitMix(&seed) % i]);
    for (size_t k : order) {
      const Example& e = *train[k];
      if (e.ids.empty()) continue;
      const float v = 1.0f / std::sqrt(static_cast<float>(e.ids.size()));
      std::array<float, kModelClasses> z = b;
      for (uint32_t id : e.ids) {
        for (int c = 0; c < kModelClasses; ++c) z[c] += v * w[id * kModelClasses + c];
      }
      for (int f = 0; f < kModelClasses; ++f) {
        for (int c = 0; c < kModelClasses; ++c) z[c] += e.lexicon[f] * lw[f * kModelClasses + c];
      }
      loom::Softmax(&z);
      std::array<float, kModelClasses> target{};
      const int alts = __builtin_popcount(e.alt_mask & ~(1u << e.label));
      target[e.label] = alts ? 1 - alt_mass : 1;
      for (int c = 0; c < kModelClasses; ++c) {
        if (c != e.label && (e.alt_mask >> c & 1)) target[c] = alt_mass / alts;
      }
      std::array<float, kModelClasses> d;
      for (int c = 0; c < kModelClasses; ++c) d[c] = (z[c] - target[c]) * class_weight[e.label];
      for (uint32_t id : e.ids) {
        for (int c = 0; c < kModelClasses; ++c) {
          float& wc = w[id * kModelClasses + c];
          const float grad = d[c] * v + l2 * wc;
          float& gc = g[id * kModelClasses + c];
          gc += grad * grad;
          wc -= lr * grad / std::sqrt(gc + 1e-8f);
        }
      }
      for (int f = 0; f < kModelClasses; ++f) {
        if (e.lexicon[f] == 0) continue;
        for (int c = 0; c < kModelClasses; ++c) {
          const float grad = d[c] * e.lexicon[f];
          lg[f * kModelClasses + c] += grad * grad;
          lw[f * kModelClasses + c] -= lr * grad / std::sqrt(lg[f * kModelClasses + c] + 1e-8f);
        }
      }
      for (int c = 0; c < kModelClasses; ++c) {
        gb[c] += d[c] * d[c];
        b[c] -= lr * d[c] / std::sqrt(gb[c] + 1e-8f);
      }
    }
  }
  if (!absl::GetFlag(FLAGS_lexicon)) std::fill(lw.begin(), lw.end(), 0.0f);
  return loom::CategoryModel::Encode(bits, b, lw, w);
}

struct Tally {
  int n = 0, primary = 0, any = 0;
  void Add(bool p, bool a) { ++n, primary += p, any += a; }
  std::string Format() const {
    return absl::StrFormat("primary %5.1f%%  primary-or-alt %5.1f%%  (n=%d)", 100.0 * primary / std::max(n, 1),
                           100.0 * any / std::max(n, 1), n);
  }
};

// Appends one wrong prediction to --errors (its text on one line, for reading and grep).
void NoteError(const std::string& report, const Example& e, int got, float p) {
  const std::string path = absl::GetFlag(FLAGS_errors);
  if (path.empty()) return;
  std::ofstream f(path, std::ios::app);
  std::string text = loom::TruncateUtf8(e.text, 300);  // whole characters: the file stays UTF-8
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\t', ' ');
  f << report << '\t' << e.set << '\t' << NameOf(e.label) << '\t' << NameOf(got) << '\t'
    << absl::StrFormat("%.2f", p) << '\t' << text << '\n';
}

void Report(const std::string& name, const loom::CategoryModel& model,
            const std::vector<const Example*>& test, bool details) {
  std::map<std::string, Tally> by_set;
  Tally all;
  int confusion[kModelClasses][kModelClasses] = {};
  for (const Example* e : test) {
    const loom::CategoryProbs p = model.PredictFeatures(e->ids, e->lexicon);
    int got = 0;
    for (int c = 1; c < kModelClasses; ++c) {
      if (p.p[c] > p.p[got]) got = c;
    }
    const bool primary = got == e->label, any = primary || (e->alt_mask >> got & 1);
    by_set[e->set].Add(primary, any);
    all.Add(primary, any);
    ++confusion[e->label][got];
    if (!primary) NoteError(name, *e, got, p.p[got]);
  }
  for (const auto& [set, t] : by_set) std::cout << absl::StrFormat("  %-30s %s\n", set, t.Format());
  std::cout << absl::StrFormat("  %-30s %s\n", "all", all.Format());
  if (!details) return;
  std::cout << "  recall per category (gold primary label):\n";
  for (int c = 0; c < kModelClasses; ++c) {
    int n = 0;
    for (int k = 0; k < kModelClasses; ++k) n += confusion[c][k];
    std::cout << absl::StrFormat("    %-14s %5.1f%%  (n=%d)\n", NameOf(c), 100.0 * confusion[c][c] / std::max(n, 1), n);
  }
  std::cout << "  confusion (row: gold primary, column: predicted):\n    " << std::string(14, ' ');
  for (int c = 0; c < kModelClasses; ++c) std::cout << absl::StrFormat("%6.6s", NameOf(c));
  std::cout << "\n";
  for (int r = 0; r < kModelClasses; ++r) {
    std::cout << absl::StrFormat("    %-14s", NameOf(r));
    for (int c = 0; c < kModelClasses; ++c) std::cout << absl::StrFormat("%6d", confusion[r][c]);
    std::cout << "\n";
  }
}

// The set of a prompt's windows of five characters (code points), ASCII lower-cased and
// whitespace runs made one space, hashed: what two prompts share when one copies the other.
std::vector<size_t> Shingles(const std::string& text) {
  std::string norm;
  for (char ch : text) {
    const bool space = std::isspace(static_cast<unsigned char>(ch));
    if (space && (norm.empty() || norm.back() == ' ')) continue;
    norm += space ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  std::vector<size_t> starts;
  for (size_t i = 0; i < norm.size(); ++i) {
    if ((static_cast<unsigned char>(norm[i]) & 0xC0) != 0x80) starts.push_back(i);
  }
  starts.push_back(norm.size());
  std::vector<size_t> out;
  const size_t n = 5;
  if (starts.size() <= n) {
    out.push_back(std::hash<std::string>{}(norm));
  } else {
    for (size_t i = 0; i + n < starts.size(); ++i) {
      out.push_back(std::hash<std::string_view>{}(
          std::string_view(norm).substr(starts[i], starts[i + n] - starts[i])));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool IsOurs(const std::string& set) { return set == "authored" || set == "project"; }

// Removes our prompts that overlap a public one by `max_overlap` (Jaccard of Shingles) or
// more, naming each on stderr; returns how many went.
int DropNearCopies(std::vector<Example>* examples, double max_overlap) {
  std::unordered_map<size_t, std::vector<uint32_t>> postings;  // shingle -> public examples
  std::vector<size_t> sizes(examples->size(), 0);
  for (uint32_t i = 0; i < examples->size(); ++i) {
    if (IsOurs((*examples)[i].set)) continue;
    const std::vector<size_t> sh = Shingles((*examples)[i].text);
    sizes[i] = sh.size();
    for (size_t h : sh) postings[h].push_back(i);
  }
  int dropped = 0;
  std::vector<bool> drop(examples->size(), false);
  for (uint32_t i = 0; i < examples->size(); ++i) {
    const Example& ours = (*examples)[i];
    if (!IsOurs(ours.set)) continue;
    const std::vector<size_t> sh = Shingles(ours.text);
    std::unordered_map<uint32_t, int> shared;
    for (size_t h : sh) {
      auto it = postings.find(h);
      if (it == postings.end()) continue;
      for (uint32_t j : it->second) ++shared[j];
    }
    for (const auto& [j, both] : shared) {
      const double jaccard = static_cast<double>(both) / static_cast<double>(sh.size() + sizes[j] - both);
      if (jaccard < max_overlap) continue;
      std::cerr << absl::StrFormat("left out (%.2f like %s): %s\n", jaccard, (*examples)[j].set,
                                   loom::TruncateUtf8(ours.text, 100));
      drop[i] = true;
      ++dropped;
      break;
    }
  }
  size_t k = 0;
  for (size_t i = 0; i < examples->size(); ++i) {
    if (drop[i]) continue;
    if (k != i) (*examples)[k] = std::move((*examples)[i]);
    ++k;
  }
  examples->resize(k);
  return dropped;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string shared = absl::GetFlag(FLAGS_shared);
  if (shared.empty()) {
    std::cerr << "loom_analyzer_train: --shared (the folder with prompts/ and train/) is required\n";
    return 2;
  }
  std::vector<Example> examples;
  if (!LoadPublic(shared, &examples)) return 1;
  if (!absl::GetFlag(FLAGS_authored).empty() && !LoadAuthored(absl::GetFlag(FLAGS_authored), &examples)) return 1;
  if (!absl::GetFlag(FLAGS_project).empty() && !LoadProject(absl::GetFlag(FLAGS_project), &examples)) return 1;
  const int copies = DropNearCopies(&examples, absl::GetFlag(FLAGS_max_overlap));
  const int bits = absl::GetFlag(FLAGS_bits);
  std::map<std::string, int> per_set;
  for (Example& e : examples) {
    e.held_out = loom::InHeldOutSplit(e.text);
    loom::ExtractFeatures(e.text, bits, &e.ids);
    if (absl::GetFlag(FLAGS_lexicon)) e.lexicon = loom::LexiconFeatures(e.text);
    ++per_set[e.set];
  }
  std::cout << "examples:";
  for (const auto& [set, n] : per_set) std::cout << " " << set << "=" << n;
  std::cout << "\n";
  if (copies > 0) std::cout << "left out " << copies << " of our prompts that near-copy a public one\n";
  const std::string audit = absl::GetFlag(FLAGS_audit);
  if (!audit.empty() && !per_set.count(audit)) {
    std::cerr << "--audit=" << audit << ": no prompts from that set\n";
    return 1;
  }
  if (const std::string dir = absl::GetFlag(FLAGS_export_fasttext); !dir.empty()) {
    return ExportFastText(dir, examples, per_set) ? 0 : 1;
  }

  auto select = [&](auto keep) {
    std::vector<const Example*> out;
    for (const Example& e : examples) {
      if (keep(e)) out.push_back(&e);
    }
    return out;
  };
  auto load = [](const std::string& bytes) {
    auto m = loom::CategoryModel::FromBytes(bytes);
    if (!m.ok()) {
      std::cerr << m.status().message() << "\n";
      std::exit(1);
    }
    return std::move(*m);
  };
  const auto train = select([](const Example& e) { return !e.held_out; });
  const auto test = select([](const Example& e) { return e.held_out; });
  std::cout << "== held-out split (" << test.size() << " prompts; trained on " << train.size()
            << ") ==\n";
  const std::string split_model = Train(train, bits);
  Report("heldout", *load(split_model), test, /*details=*/true);

  if (absl::GetFlag(FLAGS_loso)) {
    for (const auto& entry : per_set) {
      const std::string& set = entry.first;  // a named reference: lambdas capture it (C++17)
      if (!IsPublicSet(set)) continue;
      const auto without = select([&](const Example& e) { return e.set != set; });
      const auto only = select([&](const Example& e) { return e.set == set; });
      std::cout << "== trained without " << set << ", scored on all of it ==\n";
      Report("without " + set, *load(Train(without, bits)), only, /*details=*/true);
    }
  }
  if (!audit.empty()) {
    const auto without = select([&](const Example& e) { return e.set != audit; });
    const auto only = select([&](const Example& e) { return e.set == audit; });
    std::cout << "== audit: trained without " << audit << ", scored on all of it ==\n";
    Report("audit " + audit, *load(Train(without, bits)), only, /*details=*/true);
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    const std::string bytes = absl::GetFlag(FLAGS_all)
                                  ? Train(select([](const Example&) { return true; }), bits)
                                  : split_model;
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f.flush()) {
      std::cerr << "cannot write " << out << "\n";
      return 1;
    }
    std::cout << "wrote " << out << " (" << bytes.size() << " bytes, "
              << (absl::GetFlag(FLAGS_all) ? "all prompts" : "training split only") << ")\n";
  }
  return 0;
}
