#include "coordinator/mesh/model_selector.h"

#include <algorithm>
#include <optional>
#include <tuple>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/categories.h"
#include "coordinator/mesh/outcome_model.h"
#include "ledger/pricing.h"

namespace loom {
namespace {
using C = v1::TaskCategory;
}  // namespace

ModelSelector::ModelSelector(AffinityTable table, SelectorOptions options)
    : table_(std::move(table)),
      options_(options),
      rng_(options.explore_seed ? options.explore_seed : std::random_device{}()) {}

double ModelSelector::LoadOf(const v1::DeviceInfo& device) {
  const v1::DeviceLoad& l = device.load();
  const int busy = std::max(l.active(), device.coordinator_inflight()) + l.queued();
  return static_cast<double>(busy) / std::max(1, l.max_concurrency());
}

std::string ModelKey(const v1::ModelInfo& model) {
  std::string key;
  {
    google::protobuf::io::StringOutputStream stream(&key);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);  // map fields in key order
    model.SerializeToCodedStream(&coded);
  }
  return key;
}

// ---- DeviceSnapshot ----

class DeviceSnapshot::Group : public ModelGroup {
 public:
  explicit Group(const v1::ModelInfo* model) : model_(model) {}
  const v1::ModelInfo& model() const override { return *model_; }
  int serving() const override { return static_cast<int>(devices_.size()); }
  bool simulated_only() const override { return !has_real_; }
  void ForEachHealthy(
      absl::FunctionRef<bool(const v1::DeviceInfo&, double)> visit) const override {
    for (const auto& [load, device] : devices_) {
      if (device->state() != v1::DEVICE_STATE_HEALTHY) continue;
      if (!visit(*device, load)) return;
    }
  }
  void Add(const v1::DeviceInfo* device) {
    devices_.emplace_back(ModelSelector::LoadOf(*device), device);
    has_real_ = has_real_ || !device->simulated();
  }
  void Sort() {
    std::sort(devices_.begin(), devices_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first, a.second->device_id()) < std::tie(b.first, b.second->device_id());
    });
  }

 private:
  const v1::ModelInfo* model_;
  bool has_real_ = false;
  std::vector<std::pair<double, const v1::DeviceInfo*>> devices_;
};

DeviceSnapshot::DeviceSnapshot(const std::vector<v1::DeviceInfo>& devices)
    : device_count_(static_cast<int>(devices.size())) {
  std::map<std::string, Group*> by_key;
  for (const v1::DeviceInfo& d : devices) {
    for (const v1::ModelInfo& m : d.models()) {
      Group*& g = by_key[ModelKey(m)];
      if (!g) g = groups_.emplace_back(std::make_unique<Group>(&m)).get();
      g->Add(&d);
    }
  }
  for (auto& g : groups_) {
    g->Sort();
    views_.push_back(g.get());
  }
}

DeviceSnapshot::~DeviceSnapshot() = default;

void DeviceSnapshot::Read(absl::FunctionRef<void(absl::Span<const ModelGroup* const>, int)> body) {
  body(views_, device_count_);
}

// ---- Ranking ----

double ModelSelector::AffinityOf(const v1::ModelInfo& model, C category, double* prior,
                                 double* good, double* bad) const {
  const double table = table_.Score(model, category);
  BlendedAffinity b{table, table, {}};
  if (options_.outcomes) b = options_.outcomes->Blend(table, model.name(), category);
  if (prior) *prior = b.prior;
  if (good) *good = b.observed.good;
  if (bad) *bad = b.observed.bad;
  return b.blended;
}

namespace {

// "affinity 0.70", or with outcomes "affinity 0.74 (prior 0.70, 8 good, 2 bad)", and when
// exploring "explored 0.81 (affinity 0.74 ...)".
std::string AffinityText(double affinity, double prior, double good, double bad,
                         double drawn = -1) {
  std::string text = good == 0 && bad == 0
                         ? absl::StrFormat("affinity %.2f", affinity)
                         : absl::StrFormat("affinity %.2f (prior %.2f, %g good, %g bad)",
                                           affinity, prior, good, bad);
  if (drawn < 0) return text;
  return absl::StrFormat("explored %.2f from %s", drawn, text);
}

}  // namespace

namespace {

bool RankedBefore(double score_a, const v1::ModelInfo& ma, const v1::DeviceInfo& da,
                  double score_b, const v1::ModelInfo& mb, const v1::DeviceInfo& db) {
  return std::make_tuple(-score_a, -ma.parameters_b(), std::cref(da.device_id()), std::cref(ma.name())) <
         std::make_tuple(-score_b, -mb.parameters_b(), std::cref(db.device_id()), std::cref(mb.name()));
}

// Devices per model weighed under soft weights: those of one model differ in speed and carbon,
// so more than the least loaded few compete.
constexpr int kWeighedPerGroup = 8;

}  // namespace

std::vector<ModelSelector::Candidate> ModelSelector::Rank(absl::Span<const ModelGroup* const> groups,
                                                          const std::vector<C>& categories,
                                                          const std::set<std::string>& excluded,
                                                          int per_group,
                                                          const SelectionPolicy* policy,
                                                          LimitTally* tally) const {
  if (policy && policy->Soft()) per_group = std::max(per_group, kWeighedPerGroup);
  const bool limited = policy && policy->HasLimits();
  std::vector<Candidate> out;
  for (const ModelGroup* g : groups) {
    if (limited && policy->PriceFails(g->model())) {
      if (tally) tally->Count(Limit::kPrice, absl::StrCat("model ", g->model().name()), g->serving());
      continue;
    }
    double affinity = -1, prior = 0, good = 0, bad = 0;
    C best = v1::TASK_CATEGORY_GENERAL;
    for (C c : categories) {
      double p, gd, bd;
      const double a = AffinityOf(g->model(), c, &p, &gd, &bd);
      if (a > affinity) affinity = a, prior = p, good = gd, bad = bd, best = c;
    }
    affinity = std::max(affinity, 0.0);
    double scored = affinity, drawn = -1;
    if (options_.explore && options_.outcomes) {
      // One draw per model (on the category of its best blend), shared by its devices.
      absl::MutexLock lock(&rng_mu_);
      drawn = options_.outcomes->Sample(prior, g->model().name(), best, rng_);
      scored = drawn;
    }
    int taken = 0;
    // Within a group the score falls as load rises, so its first devices are its best.
    g->ForEachHealthy([&](const v1::DeviceInfo& d, double load) {
      if (excluded.count(d.device_id())) return true;
      if (limited) {
        if (std::optional<Limit> failed = policy->DeviceFails(d)) {
          if (tally) tally->Count(*failed, d.device_id());
          return true;
        }
      }
      out.push_back({&d, &g->model(), affinity, load, scored - options_.load_weight * load,
                     prior, good, bad, drawn});
      return ++taken < per_group;
    });
  }
  if (policy && policy->Soft()) {
    Weigh(*policy, &out);
    return out;
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    return RankedBefore(a.score, *a.model, *a.device, b.score, *b.model, *b.device);
  });
  return out;
}

void ModelSelector::Weigh(const SelectionPolicy& policy, std::vector<Candidate>* ranked) const {
  std::vector<Factors> factors;
  factors.reserve(ranked->size());
  for (const Candidate& c : *ranked) {
    factors.push_back({c.drawn >= 0 ? c.drawn : c.affinity, c.load, PricePer1kMicro(*c.model),
                       c.device->load().tokens_per_second(), c.device->observed_ttft_ms(),
                       c.device->carbon_g_per_kwh()});
  }
  std::vector<WeightedScore> scores = WeightedScores(policy, options_.load_weight, factors);
  for (size_t i = 0; i < ranked->size(); ++i) {
    (*ranked)[i].weighed = scores[i];
    (*ranked)[i].score = scores[i].score;
  }
  std::sort(ranked->begin(), ranked->end(), [](const Candidate& a, const Candidate& b) {
    return RankedBefore(a.score, *a.model, *a.device, b.score, *b.model, *b.device);
  });
}

void ModelSelector::SetAlternatives(const std::vector<Candidate>& ranked, Selection* s) {
  const Candidate* best_affinity = nullptr;
  int64_t cheapest = 0;
  for (const Candidate& c : ranked) {
    const int64_t price = PricePer1kMicro(*c.model);
    if (cheapest == 0 || price < cheapest) cheapest = price;
    if (!best_affinity || c.affinity > best_affinity->affinity) best_affinity = &c;
  }
  s->cheapest_price_per_1k_micro = cheapest;
  s->best_affinity_price_per_1k_micro = best_affinity ? PricePer1kMicro(*best_affinity->model) : 0;
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
  s.carbon_g_per_kwh = c.device->carbon_g_per_kwh();
  s.cheapest_price_per_1k_micro = s.best_affinity_price_per_1k_micro = PricePer1kMicro(*c.model);
  return s;
}

namespace {

// "choose d/m 0.71 (affinity 0.80 - load 0.10)" or, with soft weights, the weighed factors.
std::string CandidateText(size_t i, const std::string& device, const std::string& model,
                          double score, const std::string& affinity, double load_penalty,
                          const SelectionPolicy* policy, const WeightedScore& w) {
  if (policy && policy->Soft()) {
    return absl::StrFormat("%s%s/%s %.2f (%s, cost %.2f, speed %.2f, carbon %.2f - load %.2f)",
                           i ? "" : "chose ", device, model, score, affinity, w.cost, w.latency,
                           w.carbon, load_penalty);
  }
  return absl::StrFormat("%s%s/%s %.2f (%s - load %.2f)", i ? "" : "chose ", device, model, score,
                         affinity, load_penalty);
}

// What a policy did to a choice, for its reason: "; policy loom-private (trust >= verified
// left out 2 device(s))".
std::string PolicyText(const SelectionPolicy* policy, const LimitTally& tally) {
  if (!policy || (!policy->HasLimits() && !policy->Soft())) return "";
  std::string text = absl::StrCat("; policy ", policy->name.empty() ? "of the request" : policy->name);
  if (policy->Soft()) {
    absl::StrAppendFormat(&text, " weights quality %.2f, cost %.2f, speed %.2f, carbon %.2f",
                          policy->weights[0], policy->weights[1], policy->weights[2],
                          policy->weights[3]);
  }
  if (tally.total() > 0) absl::StrAppend(&text, " (", tally.Text(*policy), ")");
  return text;
}

}  // namespace

absl::StatusOr<Selection> ModelSelector::SelectForCategories(
    CandidateSource& source, const std::vector<C>& categories,
    const std::set<std::string>& excluded, const SelectionPolicy* policy) const {
  constexpr int kShown = 3;  // the choice and two runners-up, in the reason
  // What the reason shows, copied out so that it is written after the source's lock is let go
  // (heartbeats wait on that lock; formatting is most of a selection's time).
  struct Shown {
    std::string device, model;
    double score, affinity, prior, good, bad, drawn, load_penalty;
    WeightedScore weighed;
  };
  std::vector<Shown> shown;
  LimitTally tally;
  int devices = 0;
  std::optional<Selection> chosen;
  source.Read([&](absl::Span<const ModelGroup* const> groups, int count) {
    devices = count;
    std::vector<Candidate> ranked = Rank(groups, categories, excluded, kShown, policy, &tally);
    if (ranked.empty()) return;
    chosen = ToSelection(ranked[0]);
    SetAlternatives(ranked, &*chosen);
    for (size_t i = 0; i < ranked.size() && i < kShown; ++i) {
      const Candidate& c = ranked[i];
      shown.push_back({c.device->device_id(), c.model->name(), c.score, c.affinity, c.prior,
                       c.good, c.bad, c.drawn, options_.load_weight * c.load, c.weighed});
    }
  });
  std::vector<std::string> names;
  for (C c : categories) names.push_back(CategoryName(c));
  if (!chosen) {
    // The policy alone left none: the request cannot be served as asked. With devices
    // excluded after failures as well, it is the mesh that failed it.
    if (tally.total() > 0 && excluded.empty()) {
      return PolicyUnmetError(*policy, tally, absl::StrJoin(names, "/"), devices);
    }
    return absl::UnavailableError(absl::StrCat(
        "no healthy device available for ", absl::StrJoin(names, "/"), " (", devices,
        " device(s) in the mesh, ", excluded.size(), " excluded after failures",
        tally.total() > 0 ? absl::StrCat("; ", tally.Text(*policy)) : "", ")"));
  }
  std::vector<std::string> parts;
  for (size_t i = 0; i < shown.size(); ++i) {
    const Shown& c = shown[i];
    parts.push_back(CandidateText(i, c.device, c.model, c.score,
                                  AffinityText(c.affinity, c.prior, c.good, c.bad, c.drawn),
                                  c.load_penalty, policy, c.weighed));
  }
  chosen->reason = absl::StrCat(absl::StrJoin(names, "/"), ": ", absl::StrJoin(parts, "; then "),
                                PolicyText(policy, tally));
  return *std::move(chosen);
}

std::vector<Selection> ModelSelector::RankDistinctModels(CandidateSource& source, C category,
                                                         int k, const SelectionPolicy* policy,
                                                         LimitTally* tally) const {
  std::vector<Selection> out;
  source.Read([&](absl::Span<const ModelGroup* const> groups, int) {
    // k devices per model are enough: the first pass wants at most k distinct devices.
    std::vector<Candidate> ranked = Rank(groups, {category}, {}, std::max(k, 1), policy, tally);
    std::set<std::string> models, used_devices;
    // First pass: distinct models on distinct devices; second: distinct models anywhere.
    for (int pass = 0; pass < 2; ++pass) {
      for (const Candidate& c : ranked) {
        if (static_cast<int>(out.size()) >= k) return;
        if (models.count(c.model->name())) continue;
        if (pass == 0 && used_devices.count(c.device->device_id())) continue;
        models.insert(c.model->name());
        used_devices.insert(c.device->device_id());
        Selection s = ToSelection(c);
        SetAlternatives(ranked, &s);
        s.reason = absl::StrFormat("compete candidate %d: %s %s, load %.2f", out.size() + 1,
                                   CategoryName(category),
                                   AffinityText(c.affinity, c.prior, c.good, c.bad, c.drawn),
                                   c.load);
        out.push_back(std::move(s));
      }
    }
  });
  return out;
}

namespace {

// Whether `m` is what a pinned passthrough asks for: the model or family, with every capability.
bool Matches(const PassthroughTarget& target, const v1::ModelInfo& m) {
  for (const std::string& c : target.capabilities) {
    if (std::find(m.capabilities().begin(), m.capabilities().end(), c) == m.capabilities().end()) {
      return false;
    }
  }
  if (!target.model.empty()) return m.name() == target.model;
  if (!target.family.empty()) return m.family() == target.family;
  return true;
}

// "model 'x' with tools", for reasons and errors.
std::string Describe(const PassthroughTarget& target) {
  std::string wanted = !target.model.empty()    ? absl::StrCat("model '", target.model, "'")
                       : !target.family.empty() ? absl::StrCat("family '", target.family, "'")
                                                : std::string("any model");
  if (!target.capabilities.empty()) {
    absl::StrAppend(&wanted, " with ", absl::StrJoin(target.capabilities, " and "));
  }
  return wanted;
}

}  // namespace

absl::StatusOr<Selection> ModelSelector::SelectPassthrough(
    CandidateSource& source, const PassthroughTarget& target,
    const std::set<std::string>& excluded, const SelectionPolicy* policy) const {
  auto matches = [&](const v1::ModelInfo& m) { return Matches(target, m); };
  const std::string wanted = Describe(target);
  const bool limited = policy && policy->HasLimits();
  const bool soft = policy && policy->Soft();
  absl::StatusOr<Selection> result = absl::UnknownError("not read");
  source.Read([&](absl::Span<const ModelGroup* const> groups, int devices) {
    // The target fixes the model, so its devices compete on load (and, under soft weights,
    // on speed, price and carbon as well).
    std::vector<Candidate> pool;
    LimitTally tally;
    int serving = 0;
    for (const ModelGroup* g : groups) {
      if (!matches(g->model())) continue;
      serving += g->serving();
      if (limited && policy->PriceFails(g->model())) {
        tally.Count(Limit::kPrice, absl::StrCat("model ", g->model().name()), g->serving());
        continue;
      }
      int taken = 0;
      g->ForEachHealthy([&](const v1::DeviceInfo& d, double load) {
        if (excluded.count(d.device_id())) return true;
        if (limited) {
          if (std::optional<Limit> failed = policy->DeviceFails(d)) {
            tally.Count(*failed, d.device_id());
            return true;
          }
        }
        pool.push_back({&d, &g->model(), 1.0, load, 1.0 - load});
        // Without soft weights the group's least loaded eligible device is its only contender.
        return soft && ++taken < kWeighedPerGroup;
      });
    }
    if (serving == 0) {
      result = devices == 0
                   ? absl::UnavailableError("no devices in the mesh")
                   : absl::NotFoundError(absl::StrCat("no device in the mesh serves ", wanted));
      return;
    }
    if (pool.empty()) {
      result = tally.total() > 0 && excluded.empty()
                   ? PolicyUnmetError(*policy, tally, wanted, devices)
                   : absl::UnavailableError(absl::StrCat(
                         "no healthy device left for ", wanted, " (", serving, " serving, ",
                         excluded.size(), " excluded after failures",
                         tally.total() > 0 ? absl::StrCat("; ", tally.Text(*policy)) : "", ")"));
      return;
    }
    if (soft) {
      Weigh(*policy, &pool);
    } else {
      auto key = [](const Candidate& c) {
        return std::make_tuple(c.load, -c.model->parameters_b(), std::cref(c.device->device_id()),
                               std::cref(c.model->name()));
      };
      std::sort(pool.begin(), pool.end(),
                [&](const Candidate& a, const Candidate& b) { return key(a) < key(b); });
    }
    const Candidate& best = pool.front();
    Selection s = ToSelection(best);
    SetAlternatives(pool, &s);
    s.reason = soft ? absl::StrFormat("best of %d serving %s by the policy's weights: %s (cost "
                                      "%.2f, speed %.2f, carbon %.2f, load %.2f)",
                                      serving, wanted, best.device->device_id(), best.weighed.cost,
                                      best.weighed.latency, best.weighed.carbon, best.load)
                    : absl::StrFormat("least loaded healthy device of %d serving %s (load %.2f)",
                                      serving, wanted, best.load);
    absl::StrAppend(&s.reason, PolicyText(policy, tally));
    result = std::move(s);
  });
  return result;
}

absl::StatusOr<Selection> ModelSelector::SelectForCategories(
    const std::vector<v1::DeviceInfo>& devices, const std::vector<C>& categories,
    const std::set<std::string>& excluded, const SelectionPolicy* policy) const {
  DeviceSnapshot snapshot(devices);
  return SelectForCategories(snapshot, categories, excluded, policy);
}

std::vector<Selection> ModelSelector::RankDistinctModels(const std::vector<v1::DeviceInfo>& devices,
                                                         C category, int k,
                                                         const SelectionPolicy* policy) const {
  DeviceSnapshot snapshot(devices);
  return RankDistinctModels(snapshot, category, k, policy);
}

absl::StatusOr<Selection> ModelSelector::SelectPassthrough(
    const std::vector<v1::DeviceInfo>& devices, const PassthroughTarget& target,
    const std::set<std::string>& excluded, const SelectionPolicy* policy) const {
  DeviceSnapshot snapshot(devices);
  return SelectPassthrough(snapshot, target, excluded, policy);
}

absl::StatusOr<std::string> SmallestUsableModel(CandidateSource& source, const std::string& configured,
                                                bool allow_simulated, absl::string_view purpose) {
  std::optional<v1::ModelInfo> smallest;
  bool pinned_found = false;
  source.Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      const v1::ModelInfo& m = g->model();
      if (!configured.empty() && m.name() != configured) continue;
      if (!allow_simulated && g->simulated_only()) continue;
      if (smallest && (m.parameters_b() > smallest->parameters_b() ||
                       (m.parameters_b() == smallest->parameters_b() &&
                        m.name() >= smallest->name()))) {
        continue;
      }
      bool usable = false;  // some healthy device serves it (a real one, unless simulated is allowed)
      g->ForEachHealthy([&](const v1::DeviceInfo& d, double) {
        usable = allow_simulated || !d.simulated();
        return !usable;
      });
      if (usable) smallest = m;
    }
    pinned_found = !configured.empty() && smallest.has_value();
  });
  if (pinned_found) return smallest->name();
  if (!configured.empty()) {
    return absl::UnavailableError(absl::StrCat(purpose, " model ", configured,
                                               " is not on a healthy device"));
  }
  if (!smallest) {
    return absl::UnavailableError(absl::StrCat(
        allow_simulated ? "no healthy device for the " : "no non-simulated model for the ", purpose));
  }
  return smallest->name();
}

}  // namespace loom
