// File: coordinator/mesh/affinity_table.h
// How well a model family suits each task category, in [0, 1]: the built-in table
// (affinity_table.cc, documented in the README), overlaid by an AffinityConfig file, and
// overridden per category by a model's own advertisement. The selector's prior (an
// OutcomeModel blends observations into it). Immutable once configured; copyable.
#ifndef LOOM_COORDINATOR_MESH_AFFINITY_TABLE_H_
#define LOOM_COORDINATOR_MESH_AFFINITY_TABLE_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "loom/v1/common.pb.h"
#include "loom/v1/config.pb.h"

namespace loom {

class AffinityTable {
 public:
  // The documented defaults (qwen-coder, qwen, llama, mistral, deepseek-coder, phi, gemma).
  static AffinityTable Defaults();
  // Families not in the table score this for every category.
  static constexpr double kUnknownFamily = 0.5;

  // Overlays `config` (validated: known categories, scores in [0, 1]).
  absl::Status Apply(const v1::AffinityConfig& config);

  // The model's own override for `category`, else its family's score, else kUnknownFamily.
  double Score(const v1::ModelInfo& model, v1::TaskCategory category) const;

 private:
  std::map<std::string, std::map<v1::TaskCategory, double>> families_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_AFFINITY_TABLE_H_
