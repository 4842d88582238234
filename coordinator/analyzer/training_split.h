// File: coordinator/analyzer/training_split.h
// The fixed evaluation split of the category classifier: a labelled prompt is held out of
// training when the hash of its text falls in one fifth of the range. The trainer and
// loom_analyzer_eval both use this, so "held-out" means the same prompts everywhere.
#ifndef LOOM_COORDINATOR_ANALYZER_TRAINING_SPLIT_H_
#define LOOM_COORDINATOR_ANALYZER_TRAINING_SPLIT_H_

#include "absl/strings/string_view.h"
#include "coordinator/analyzer/text_features.h"

namespace loom {

inline bool InHeldOutSplit(absl::string_view text) { return Fnv1a64(text) % 5 == 0; }

}  // namespace loom

#endif  // LOOM_COORDINATOR_ANALYZER_TRAINING_SPLIT_H_
