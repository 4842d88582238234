// File: coordinator/outcome_model.cc
#include "coordinator/outcome_model.h"

#include <algorithm>

namespace loom {

void OutcomeModel::Observe(const std::string& model, v1::TaskCategory category, bool good,
                           double weight) {
  if (!(weight > 0)) return;
  absl::MutexLock lock(&mu_);
  OutcomeCounts& c = counts_[{model, category}];
  (good ? c.good : c.bad) += weight;
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
  out.blended = std::clamp(mean, std::max(0.0, prior - options_.max_shift),
                           std::min(1.0, prior + options_.max_shift));
  return out;
}

std::map<std::pair<std::string, v1::TaskCategory>, OutcomeCounts> OutcomeModel::Counts() const {
  absl::ReaderMutexLock lock(&mu_);
  return counts_;
}

}  // namespace loom
