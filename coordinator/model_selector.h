// File: coordinator/model_selector.h
// Chooses a device and model for a piece of work from a snapshot of the registry.
//
// Passthrough (this file's first job): the requested model, else the requested family, else
// any model; among the healthy devices serving it and not excluded, the least loaded wins.
// Load = (max(reported active, this coordinator's in-flight) + queued) / max_concurrency.
// Ties go to the larger model, then the lower device id, then the model name, so the choice
// is deterministic.
//
// Stateless and thread-safe.
#ifndef LOOM_COORDINATOR_MODEL_SELECTOR_H_
#define LOOM_COORDINATOR_MODEL_SELECTOR_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loom/v1/common.pb.h"

namespace loom {

struct PassthroughTarget {
  std::string model;   // exact model name, or empty
  std::string family;  // model family, or empty
};

struct Selection {
  std::string device_id;
  std::string provider_id;
  std::string address;
  v1::ModelInfo model;
  double load = 0;
  std::string reason;  // why this device, for plans and logs
};

class ModelSelector {
 public:
  // NOT_FOUND when no device in the mesh serves the target at all; UNAVAILABLE when some do
  // but none is healthy and not excluded.
  absl::StatusOr<Selection> SelectPassthrough(const std::vector<v1::DeviceInfo>& devices,
                                              const PassthroughTarget& target,
                                              const std::set<std::string>& excluded) const;

  static double LoadOf(const v1::DeviceInfo& device);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MODEL_SELECTOR_H_
