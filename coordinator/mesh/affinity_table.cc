#include "coordinator/mesh/affinity_table.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/categories.h"

namespace loom {
namespace {

using C = v1::TaskCategory;

// The documented defaults (README, "Affinity").
// family: code, reasoning, creative, factual, summarization, translation, structured, general
struct FamilyRow {
  const char* family;
  double scores[8];
};
constexpr FamilyRow kDefaultAffinity[] = {
    {"qwen-coder", {0.95, 0.70, 0.50, 0.60, 0.60, 0.55, 0.85, 0.60}},
    {"deepseek-coder", {0.93, 0.72, 0.45, 0.55, 0.55, 0.50, 0.80, 0.55}},
    {"qwen", {0.80, 0.80, 0.70, 0.75, 0.75, 0.85, 0.80, 0.80}},
    {"llama", {0.70, 0.85, 0.80, 0.80, 0.80, 0.75, 0.70, 0.85}},
    {"mistral", {0.80, 0.80, 0.70, 0.75, 0.75, 0.80, 0.75, 0.75}},
    {"gemma", {0.65, 0.70, 0.75, 0.75, 0.75, 0.75, 0.65, 0.75}},
    {"phi", {0.70, 0.75, 0.55, 0.60, 0.65, 0.50, 0.65, 0.60}},
};

}  // namespace

AffinityTable AffinityTable::Defaults() {
  AffinityTable t;
  for (const FamilyRow& row : kDefaultAffinity) {
    for (size_t i = 0; i < kAllCategories.size(); ++i) {
      t.families_[row.family][kAllCategories[i]] = row.scores[i];
    }
  }
  return t;
}

absl::Status AffinityTable::Apply(const v1::AffinityConfig& config) {
  AffinityTable next = *this;
  for (int i = 0; i < config.families_size(); ++i) {
    const auto& f = config.families(i);
    if (f.family().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("families[", i, "].family: empty"));
    }
    for (const auto& [name, score] : f.scores()) {
      std::optional<C> c = ParseCategory(name);
      if (!c) {
        return absl::InvalidArgumentError(
            absl::StrCat("families[", i, "].scores.", name, ": unknown category"));
      }
      if (score < 0 || score > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("families[", i, "].scores.", name, ": must be in [0, 1]"));
      }
      next.families_[f.family()][*c] = score;
    }
  }
  *this = std::move(next);
  return absl::OkStatus();
}

double AffinityTable::Score(const v1::ModelInfo& model, C category) const {
  auto override_it = model.affinity_overrides().find(CategoryName(category));
  if (override_it != model.affinity_overrides().end()) return override_it->second;
  auto family = families_.find(model.family());
  if (family == families_.end()) return kUnknownFamily;
  auto it = family->second.find(category);
  return it == family->second.end() ? kUnknownFamily : it->second;
}

}  // namespace loom
