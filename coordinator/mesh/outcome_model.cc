// File: coordinator/mesh/outcome_model.cc
#include "coordinator/mesh/outcome_model.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

namespace loom {

absl::Status OutcomeModel::Load() {
  if (!store_) return absl::OkStatus();
  absl::StatusOr<std::vector<OutcomeDelta>> totals = store_->Outcomes();
  if (!totals.ok()) return totals.status();
  absl::MutexLock lock(&mu_);
  counts_.clear();
  for (const OutcomeDelta& t : *totals) counts_[{t.model, t.category}] = {t.good, t.bad};
  return absl::OkStatus();
}

void OutcomeModel::Observe(const std::string& model, v1::TaskCategory category, bool good,
                           double weight) {
  if (!(weight > 0)) return;
  OutcomeDelta d{model, category, 0, 0};
  (good ? d.good : d.bad) = weight;
  ObserveAll({d});
}

void OutcomeModel::ObserveAll(const std::vector<OutcomeDelta>& deltas) {
  std::vector<OutcomeDelta> kept;
  for (const OutcomeDelta& d : deltas) {
    if (!d.model.empty() && d.good >= 0 && d.bad >= 0 && d.good + d.bad > 0 &&
        std::isfinite(d.good + d.bad)) {
      kept.push_back(d);
    }
  }
  if (kept.empty()) return;
  Count(kept);
  if (!store_) return;
  if (absl::Status s = store_->AddOutcomes(kept); !s.ok() && !absl::IsUnimplemented(s)) {
    spdlog::warn("outcomes: keeping {} observation(s) in the ledger failed ({}); they count "
                 "until the coordinator restarts",
                 kept.size(), s.ToString());
  }
}

void OutcomeModel::Apply(const std::vector<OutcomeDelta>& deltas) { Count(deltas); }

void OutcomeModel::Count(const std::vector<OutcomeDelta>& deltas) {
  absl::MutexLock lock(&mu_);
  for (const OutcomeDelta& d : deltas) {
    OutcomeCounts& c = counts_[{d.model, d.category}];
    c.good += d.good;
    c.bad += d.bad;
  }
}

double OutcomeModel::Bounded(double prior, double value) const {
  return std::clamp(value, std::max(0.0, prior - options_.max_shift),
                    std::min(1.0, prior + options_.max_shift));
}

BlendedAffinity OutcomeModel::Blend(double prior, const std::string& model,
                                    v1::TaskCategory category) const {
  BlendedAffinity out;
  out.prior = prior;
  out.blended = prior;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = counts_.find({model, category});
    if (it == counts_.end()) return out;
    out.observed = it->second;
  }
  const double k = options_.prior_strength;
  const double mean = (prior * k + out.observed.good) / (k + out.observed.good + out.observed.bad);
  out.blended = Bounded(prior, mean);
  return out;
}

double OutcomeModel::Sample(double prior, const std::string& model, v1::TaskCategory category,
                            std::mt19937_64& rng) const {
  const BlendedAffinity b = Blend(prior, model, category);
  const double k = options_.prior_strength;
  // Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b); both shapes kept above zero
  // (a prior of exactly 0 or 1 would otherwise make one degenerate).
  const double a = std::max(1e-3, prior * k + b.observed.good);
  const double c = std::max(1e-3, (1 - prior) * k + b.observed.bad);
  const double x = std::gamma_distribution<double>(a, 1.0)(rng);
  const double y = std::gamma_distribution<double>(c, 1.0)(rng);
  if (!(x + y > 0)) return b.blended;
  return Bounded(prior, x / (x + y));
}

std::map<std::pair<std::string, v1::TaskCategory>, OutcomeCounts> OutcomeModel::Counts() const {
  absl::ReaderMutexLock lock(&mu_);
  return counts_;
}

}  // namespace loom
