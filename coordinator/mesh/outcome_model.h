// File: coordinator/mesh/outcome_model.h
// Affinities that learn: for each (model, category), how its work has turned out, as the
// counts of a Beta distribution whose prior is the configured affinity. The selector scores a
// model with the blend:
//   blended = (prior x prior_strength + good) / (prior_strength + good + bad)
// kept within max_shift of the prior (and within [0, 1]), so observations move an affinity but
// a run of bad luck cannot bury a model, nor a streak make one unbeatable. What counts as an
// outcome is the caller's: RequestRunner feeds compete verdicts (good for the winner, bad for
// the others), AttemptRunner missed deadlines (weakly bad), feedback.h a client's verdict.
//
// Persistence: with a store (the ledger, LedgerStore::AddOutcomes/Outcomes), Load reads the
// totals at start and Observe adds each outcome to them, so what was learnt survives a
// restart. A store that fails to write is logged and the counts here still move (they are
// statistics: losing one costs a little learning, never money). Feedback is written by the
// ledger in the verdict's own transaction and only Applied here. Coordinators sharing a ledger
// call Load again on a timer (--outcomes_refresh_ms) to learn from each other; an observation
// counted here while a Load reads may be missing from the counts until the next Load.
//
// Exploration (Thompson sampling): Sample draws an affinity from the Beta posterior instead of
// taking its mean, so a model with few observations is tried now and then; the selector uses
// it only when asked (SelectorOptions.explore) and never for pinned requests.
//
// Thread-safe.
//
//   OutcomeModel outcomes({}, ledger);
//   LOOM_RETURN_IF_ERROR(outcomes.Load());
//   outcomes.Observe("llama-3.1-8b", TASK_CATEGORY_CODE, /*good=*/true);
//   double a = outcomes.Blend(0.70, "llama-3.1-8b", TASK_CATEGORY_CODE).blended;  // > 0.70
#ifndef LOOM_COORDINATOR_MESH_OUTCOME_MODEL_H_
#define LOOM_COORDINATOR_MESH_OUTCOME_MODEL_H_

#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "ledger/ledger_store.h"
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
  // `store` (may be null: in memory only) must outlive this.
  explicit OutcomeModel(OutcomeOptions options = {}, LedgerStore* store = nullptr)
      : options_(options), store_(store) {}

  // Replaces the counts with the totals the store keeps. OK without a store.
  absl::Status Load();

  // Records one outcome of `weight` (> 0) for `model` on `category`, here and in the store.
  void Observe(const std::string& model, v1::TaskCategory category, bool good, double weight = 1);
  // Several at once (one store write).
  void ObserveAll(const std::vector<OutcomeDelta>& deltas);
  // Counts outcomes the store holds already (a client's verdict, written with it).
  void Apply(const std::vector<OutcomeDelta>& deltas);

  BlendedAffinity Blend(double prior, const std::string& model, v1::TaskCategory category) const;
  // A draw from Beta(prior x strength + good, (1 - prior) x strength + bad), within the same
  // bounds as the blend.
  double Sample(double prior, const std::string& model, v1::TaskCategory category,
                std::mt19937_64& rng) const;

  // Every (model, category) observed, with its counts.
  std::map<std::pair<std::string, v1::TaskCategory>, OutcomeCounts> Counts() const;

 private:
  double Bounded(double prior, double value) const;
  void Count(const std::vector<OutcomeDelta>& deltas) ABSL_LOCKS_EXCLUDED(mu_);

  const OutcomeOptions options_;
  LedgerStore* const store_;
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, v1::TaskCategory>, OutcomeCounts> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_OUTCOME_MODEL_H_
