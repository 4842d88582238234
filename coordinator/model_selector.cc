#include "coordinator/model_selector.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loom {

double ModelSelector::LoadOf(const v1::DeviceInfo& device) {
  const v1::DeviceLoad& l = device.load();
  const int busy = std::max(l.active(), device.coordinator_inflight()) + l.queued();
  return static_cast<double>(busy) / std::max(1, l.max_concurrency());
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
  Selection s;
  s.device_id = best_device->device_id();
  s.provider_id = best_device->provider_id();
  s.address = best_device->address();
  s.model = *best_model;
  s.load = best_load;
  s.reason = absl::StrFormat("least loaded of %d healthy candidate(s) for %s (load %.2f)",
                             candidates, wanted, best_load);
  return s;
}

}  // namespace loom
