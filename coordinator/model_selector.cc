#include "coordinator/model_selector.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/categories.h"

namespace loom {
namespace {

using C = v1::TaskCategory;

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

ModelSelector::ModelSelector(AffinityTable table, SelectorOptions options)
    : table_(std::move(table)), options_(options) {}

double ModelSelector::LoadOf(const v1::DeviceInfo& device) {
  const v1::DeviceLoad& l = device.load();
  const int busy = std::max(l.active(), device.coordinator_inflight()) + l.queued();
  return static_cast<double>(busy) / std::max(1, l.max_concurrency());
}

std::vector<ModelSelector::Candidate> ModelSelector::Rank(
    const std::vector<v1::DeviceInfo>& devices, const std::vector<C>& categories,
    const std::set<std::string>& excluded) const {
  std::vector<Candidate> out;
  for (const v1::DeviceInfo& d : devices) {
    if (d.state() != v1::DEVICE_STATE_HEALTHY || excluded.count(d.device_id())) continue;
    const double load = LoadOf(d);
    for (const v1::ModelInfo& m : d.models()) {
      double affinity = 0;
      for (C c : categories) affinity = std::max(affinity, table_.Score(m, c));
      out.push_back({&d, &m, affinity, load, affinity - options_.load_weight * load});
    }
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    return std::make_tuple(-a.score, -a.model->parameters_b(), a.device->device_id(),
                           a.model->name()) < std::make_tuple(-b.score, -b.model->parameters_b(),
                                                              b.device->device_id(),
                                                              b.model->name());
  });
  return out;
}

Selection ModelSelector::ToSelection(const Candidate& c) {
  Selection s;
  s.device_id = c.device->device_id();
  s.provider_id = c.device->provider_id();
  s.address = c.device->address();
  s.model = *c.model;
  s.load = c.load;
  s.score = c.score;
  s.tokens_per_second = c.device->load().tokens_per_second();
  return s;
}

absl::StatusOr<Selection> ModelSelector::SelectForCategories(
    const std::vector<v1::DeviceInfo>& devices, const std::vector<C>& categories,
    const std::set<std::string>& excluded) const {
  std::vector<Candidate> ranked = Rank(devices, categories, excluded);
  std::vector<std::string> names;
  for (C c : categories) names.push_back(CategoryName(c));
  if (ranked.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "no healthy device available for ", absl::StrJoin(names, "/"), " (", devices.size(),
        " device(s) in the mesh, ", excluded.size(), " excluded after failures)"));
  }
  Selection s = ToSelection(ranked[0]);
  std::vector<std::string> parts;
  for (size_t i = 0; i < ranked.size() && i < 3; ++i) {
    const Candidate& c = ranked[i];
    parts.push_back(absl::StrFormat("%s%s/%s %.2f (affinity %.2f - load %.2f)", i ? "" : "chose ",
                                    c.device->device_id(), c.model->name(), c.score, c.affinity,
                                    options_.load_weight * c.load));
  }
  s.reason = absl::StrCat(absl::StrJoin(names, "/"), ": ", absl::StrJoin(parts, "; then "));
  return s;
}

std::vector<Selection> ModelSelector::RankDistinctModels(const std::vector<v1::DeviceInfo>& devices,
                                                         C category, int k) const {
  std::vector<Candidate> ranked = Rank(devices, {category}, {});
  std::vector<Selection> out;
  std::set<std::string> models, used_devices;
  // First pass: distinct models on distinct devices; second: distinct models anywhere.
  for (int pass = 0; pass < 2; ++pass) {
    for (const Candidate& c : ranked) {
      if (static_cast<int>(out.size()) >= k) return out;
      if (models.count(c.model->name())) continue;
      if (pass == 0 && used_devices.count(c.device->device_id())) continue;
      models.insert(c.model->name());
      used_devices.insert(c.device->device_id());
      Selection s = ToSelection(c);
      s.reason = absl::StrFormat("compete candidate %d: %s affinity %.2f, load %.2f",
                                 out.size() + 1, CategoryName(category), c.affinity, c.load);
      out.push_back(std::move(s));
    }
  }
  return out;
}

absl::StatusOr<Selection> ModelSelector::SelectPassthrough(
    const std::vector<v1::DeviceInfo>& devices, const PassthroughTarget& target,
    const std::set<std::string>& excluded) const {
  auto matches = [&](const v1::ModelInfo& m) {
    if (!target.model.empty()) return m.name() == target.model;
    if (!target.family.empty()) return m.family() == target.family;
    return true;
  };
  const std::string wanted = !target.model.empty()    ? absl::StrCat("model '", target.model, "'")
                             : !target.family.empty() ? absl::StrCat("family '", target.family, "'")
                                                      : std::string("any model");
  const v1::DeviceInfo* best_device = nullptr;
  const v1::ModelInfo* best_model = nullptr;
  double best_load = 0;
  int serving = 0, candidates = 0;
  for (const v1::DeviceInfo& d : devices) {
    for (const v1::ModelInfo& m : d.models()) {
      if (!matches(m)) continue;
      ++serving;
      if (d.state() != v1::DEVICE_STATE_HEALTHY || excluded.count(d.device_id())) continue;
      ++candidates;
      const double load = LoadOf(d);
      auto key = [](double load, const v1::DeviceInfo& d, const v1::ModelInfo& m) {
        return std::make_tuple(load, -m.parameters_b(), d.device_id(), m.name());
      };
      if (!best_device || key(load, d, m) < key(best_load, *best_device, *best_model)) {
        best_device = &d;
        best_model = &m;
        best_load = load;
      }
    }
  }
  if (serving == 0) {
    if (devices.empty()) return absl::UnavailableError("no devices in the mesh");
    return absl::NotFoundError(absl::StrCat("no device in the mesh serves ", wanted));
  }
  if (!best_device) {
    return absl::UnavailableError(absl::StrCat(
        "no healthy device left for ", wanted, " (", serving, " serving, ", excluded.size(),
        " excluded after failures)"));
  }
  Candidate c{best_device, best_model, 1.0, best_load, 1.0 - best_load};
  Selection s = ToSelection(c);
  s.reason = absl::StrFormat("least loaded of %d healthy candidate(s) for %s (load %.2f)",
                             candidates, wanted, best_load);
  return s;
}

}  // namespace loom
