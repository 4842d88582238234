// File: coordinator/outcome_model.h
// Affinities that learn: for each (model, category), how its work has turned out, as the
// counts of a Beta distribution whose prior is the configured affinity. The selector scores a
// model with the blend:
//   blended = (prior x prior_strength + good) / (prior_strength + good + bad)
// kept within max_shift of the prior (and within [0, 1]), so observations move an affinity but
// a run of bad luck cannot bury a model, nor a streak make one unbeatable. What counts as an
// outcome is the caller's (RequestRunner: a compete verdict, good for the winner and bad for the
// others; AttemptRunner: a failed attempt, weakly bad).
//
// In memory: the counts start from zero when the coordinator starts (persisting them in the
// ledger database, and client feedback, are the next step of issue 16).
//
// Thread-safe.
//
//   OutcomeModel outcomes;
//   outcomes.Observe("llama-3.1-8b", TASK_CATEGORY_CODE, /*good=*/true);
//   double a = outcomes.Blend(0.70, "llama-3.1-8b", TASK_CATEGORY_CODE).blended;  // > 0.70
#ifndef LOOM_COORDINATOR_OUTCOME_MODEL_H_
#define LOOM_COORDINATOR_OUTCOME_MODEL_H_

#include <map>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "loom/v1/common.pb.h"

namespace loom {

struct OutcomeOptions {
  double prior_strength = 20;  // observations the configured affinity is worth
  double max_shift = 0.2;      // observations move an affinity at most this far from its prior
};

struct OutcomeCounts {
  double good = 0;
  double bad = 0;
};

struct BlendedAffinity {
  double prior = 0;
  double blended = 0;
  OutcomeCounts observed;
};

class OutcomeModel {
 public:
  explicit OutcomeModel(OutcomeOptions options = {}) : options_(options) {}

  // Records one outcome of `weight` (> 0) for `model` on `category`.
  void Observe(const std::string& model, v1::TaskCategory category, bool good, double weight = 1);

  BlendedAffinity Blend(double prior, const std::string& model, v1::TaskCategory category) const;

  // Every (model, category) observed, with its counts.
  std::map<std::pair<std::string, v1::TaskCategory>, OutcomeCounts> Counts() const;

 private:
  const OutcomeOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, v1::TaskCategory>, OutcomeCounts> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_OUTCOME_MODEL_H_
