// File: coordinator/mesh/model_selector.h
// Chooses a device and model for a piece of work from a CandidateSource: the live devices
// grouped by model advertisement, each group least loaded first. DeviceRegistry is the source on
// the request path and keeps the groups current as devices come, go and report load, so a
// choice reads a few entries per distinct model however many devices there are (at 10,000
// devices it takes microseconds; copying a snapshot took milliseconds). DeviceSnapshot groups a
// plain list the same way, for plans and tests; both feed the one ranking below.
//
// Affinity: how well a model family suits a task category, in [0, 1] (AffinityTable; the
// built-in defaults are in affinity_table.cc and the README, a config file may change them, and
// a model's advertisement may override its family's scores per category).
// With an OutcomeModel, a model's affinity is the table's blended with what was observed of its
// work on the category (the reason then shows the prior and the counts).
// Score = affinity - load_weight x load, where load = (max(reported active, this
// coordinator's in-flight) + queued) / max_concurrency. With the default weight 0.6 a slightly
// less suited model on an idle device beats the best model on a busy one (llama's 0.70 for
// code on an idle device beats qwen-coder's 0.95 on a device at half load: 0.95 - 0.30 = 0.65).
// Ties go to the larger model, then the lower device id, then the model name. Devices that are
// not HEALTHY, or excluded (earlier failures of this work, policy), are never chosen.
//
// Policies (selection_policy.h): a call may carry a SelectionPolicy. Its hard limits leave
// devices out first (a model above its price limit as a whole; the others device by device,
// scanning a model's devices in load order until enough pass); when none is left the choice
// fails with PolicyUnmetError naming each limit and the devices it left out. Its soft weights
// then score the rest (more devices per model are weighed, since speed and carbon differ
// between devices of one model). Without a policy, or with quality alone, nothing changes.
//
// Passthrough with a pinned model or family: the least loaded healthy device serving it.
//
// Thread-safe (immutable after construction).
#ifndef LOOM_COORDINATOR_MESH_MODEL_SELECTOR_H_
#define LOOM_COORDINATOR_MESH_MODEL_SELECTOR_H_

#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "coordinator/mesh/affinity_table.h"
#include "coordinator/mesh/selection_policy.h"
#include "loom/v1/common.pb.h"
#include "loom/v1/config.pb.h"

namespace loom {

// One distinct model advertisement (every field equal) and the devices advertising it.
class ModelGroup {
 public:
  virtual ~ModelGroup() = default;
  virtual const v1::ModelInfo& model() const = 0;
  // Devices advertising the model, in any state.
  virtual int serving() const = 0;
  // True when every device advertising the model is a simulated one.
  virtual bool simulated_only() const = 0;
  // Calls `visit` with the HEALTHY devices advertising the model, least loaded first (ties by
  // device id), until it returns false. `load` is ModelSelector::LoadOf(device).
  virtual void ForEachHealthy(
      absl::FunctionRef<bool(const v1::DeviceInfo& device, double load)> visit) const = 0;
};

// What a selector chooses among. Implementations say how they stay consistent.
class CandidateSource {
 public:
  virtual ~CandidateSource() = default;
  // Runs `body` with every model group and the number of live devices; the groups (and the
  // devices they yield) are valid only during the call, and must not be used to call back
  // into the source.
  virtual void Read(
      absl::FunctionRef<void(absl::Span<const ModelGroup* const> groups, int devices)> body) = 0;
};

// Groups a list of devices (as Snapshot returns them, states included) for the selector.
class DeviceSnapshot : public CandidateSource {
 public:
  // `devices` must outlive this.
  explicit DeviceSnapshot(const std::vector<v1::DeviceInfo>& devices);
  ~DeviceSnapshot() override;
  void Read(absl::FunctionRef<void(absl::Span<const ModelGroup* const>, int)> body) override;

 private:
  class Group;
  const int device_count_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::vector<const ModelGroup*> views_;
};

// A key equal for two advertisements exactly when every field is (map order ignored).
std::string ModelKey(const v1::ModelInfo& model);

class OutcomeModel;

struct SelectorOptions {
  double load_weight = 0.6;  // score penalty of a fully loaded device
  // Observed outcomes that move the configured affinities (outcome_model.h); null: the table
  // alone. Not owned; must outlive the selector.
  const OutcomeModel* outcomes = nullptr;
  // Thompson sampling: unpinned selections score each model with a draw from its outcome
  // posterior (OutcomeModel::Sample) instead of the blend, so models with few observations
  // are tried now and then. Needs `outcomes`. Pinned requests (SelectPassthrough) never
  // explore. The draws come from one generator seeded with explore_seed (0: from the OS).
  bool explore = false;
  uint64_t explore_seed = 0;
};

struct PassthroughTarget {
  std::string model;   // exact model name, or empty
  std::string family;  // model family, or empty
  // What the model must advertise (ModelInfo.capabilities: "tools", "json_schema").
  std::vector<std::string> capabilities;
};

struct Selection {
  std::string device_id;
  std::string provider_id;
  std::string address;
  v1::ModelInfo model;
  double load = 0;
  double score = 0;
  double tokens_per_second = 0;  // the device's reported speed (0: unknown)
  std::string reason;            // why this device, with the runners-up
  // For the receipt (PolicyReport): among the candidates the policy's limits allowed, the
  // lowest price and the price of the one with the best affinity; the chosen device's
  // declared carbon intensity (0: unknown).
  int64_t cheapest_price_per_1k_micro = 0;
  int64_t best_affinity_price_per_1k_micro = 0;
  double carbon_g_per_kwh = 0;
};

class ModelSelector {
 public:
  explicit ModelSelector(AffinityTable table = AffinityTable::Defaults(),
                         SelectorOptions options = {});

  // The best device+model for work needing any of `categories` (a model's affinity is its best
  // among them). UNAVAILABLE when no healthy, non-excluded device exists.
  // With `policy` (may be null): FAILED_PRECONDITION (PolicyUnmetError) when its limits leave
  // no device.
  absl::StatusOr<Selection> SelectForCategories(CandidateSource& source,
                                                const std::vector<v1::TaskCategory>& categories,
                                                const std::set<std::string>& excluded,
                                                const SelectionPolicy* policy = nullptr) const;

  // Up to `k` candidates on distinct models (and, where possible, distinct devices), best
  // first, for compete. `tally` (may be null) counts the devices the policy left out.
  std::vector<Selection> RankDistinctModels(CandidateSource& source, v1::TaskCategory category,
                                            int k, const SelectionPolicy* policy = nullptr,
                                            LimitTally* tally = nullptr) const;

  // NOT_FOUND when no device in the mesh serves the target at all; UNAVAILABLE when some do
  // but none is healthy and not excluded; FAILED_PRECONDITION when the policy left none.
  absl::StatusOr<Selection> SelectPassthrough(CandidateSource& source,
                                              const PassthroughTarget& target,
                                              const std::set<std::string>& excluded,
                                              const SelectionPolicy* policy = nullptr) const;

  // The same over a list of devices (grouped first: for plans and tests, not the hot path).
  absl::StatusOr<Selection> SelectForCategories(const std::vector<v1::DeviceInfo>& devices,
                                                const std::vector<v1::TaskCategory>& categories,
                                                const std::set<std::string>& excluded,
                                                const SelectionPolicy* policy = nullptr) const;
  std::vector<Selection> RankDistinctModels(const std::vector<v1::DeviceInfo>& devices,
                                            v1::TaskCategory category, int k,
                                            const SelectionPolicy* policy = nullptr) const;
  absl::StatusOr<Selection> SelectPassthrough(const std::vector<v1::DeviceInfo>& devices,
                                              const PassthroughTarget& target,
                                              const std::set<std::string>& excluded,
                                              const SelectionPolicy* policy = nullptr) const;

  static double LoadOf(const v1::DeviceInfo& device);
  const AffinityTable& affinity() const { return table_; }
  // The affinity the selector uses for `model` on `category`: the table's, blended with the
  // observed outcomes when there are any.
  double AffinityOf(const v1::ModelInfo& model, v1::TaskCategory category, double* prior = nullptr,
                    double* good = nullptr, double* bad = nullptr) const;

 private:
  struct Candidate {
    const v1::DeviceInfo* device;
    const v1::ModelInfo* model;
    double affinity, load, score;
    double prior;  // the table's affinity, before outcomes moved it
    double good, bad;  // the outcomes observed
    double drawn = -1;  // the Thompson draw scored instead of the blend (-1: none)
    WeightedScore weighed;  // with a policy's soft weights: the normalised factors
  };
  // The best `per_group` healthy, non-excluded devices of every group that pass `policy`'s
  // limits (may be null; `tally` counts what they left out), ranked (by score, then larger
  // model, device id, model name). The pointers are valid only inside source.Read.
  std::vector<Candidate> Rank(absl::Span<const ModelGroup* const> groups,
                              const std::vector<v1::TaskCategory>& categories,
                              const std::set<std::string>& excluded, int per_group,
                              const SelectionPolicy* policy, LimitTally* tally) const;
  // Rescores `ranked` by the policy's soft weights and sorts it again.
  void Weigh(const SelectionPolicy& policy, std::vector<Candidate>* ranked) const;
  static Selection ToSelection(const Candidate& c);
  // The receipt's alternatives (Selection::cheapest_..., best_affinity_...) from `ranked`.
  static void SetAlternatives(const std::vector<Candidate>& ranked, Selection* s);

  const AffinityTable table_;
  const SelectorOptions options_;
  mutable absl::Mutex rng_mu_;
  mutable std::mt19937_64 rng_ ABSL_GUARDED_BY(rng_mu_);
};

// The smallest model (by parameters, then name) some healthy device of `source` serves, for a
// planning call (decomposer, router): `configured` when set (UNAVAILABLE when no healthy
// device serves it), else any; simulated devices only when `allow_simulated`. `purpose` names
// the caller in errors ("decomposer").
absl::StatusOr<std::string> SmallestUsableModel(CandidateSource& source, const std::string& configured,
                                                bool allow_simulated, absl::string_view purpose);

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_MODEL_SELECTOR_H_
