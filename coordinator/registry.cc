#include "coordinator/registry.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/protocol.h"

namespace loom {
namespace {

constexpr size_t kMaxName = 128;
constexpr size_t kMaxAddress = 256;

absl::Status ValidateAdvertisement(const v1::RegisterRequest& r, int max_models) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("register ", r.device_id(), ": ", what));
  };
  if (r.device_id().empty() || r.device_id().size() > kMaxName) return bad("device_id must be 1-128 chars");
  if (r.provider_id().empty() || r.provider_id().size() > kMaxName) {
    return bad("provider_id must be 1-128 chars");
  }
  if (r.address().empty() || r.address().size() > kMaxAddress) return bad("address must be set");
  if (r.models().empty()) return bad("no models advertised");
  if (r.models_size() > max_models) return bad(absl::StrCat("more than ", max_models, " models"));
  std::set<std::string> names;
  for (const auto& m : r.models()) {
    if (m.name().empty() || m.name().size() > kMaxName) return bad("model name must be 1-128 chars");
    if (m.family().empty() || m.family().size() > kMaxName) {
      return bad(absl::StrCat("model ", m.name(), " has no family"));
    }
    if (!names.insert(m.name()).second) return bad(absl::StrCat("model ", m.name(), " twice"));
    if (m.price_per_1k_micro() < 0 || m.parameters_b() < 0 || m.context_length() < 0) {
      return bad(absl::StrCat("model ", m.name(), " has a negative size, context or price"));
    }
  }
  if (r.load().max_concurrency() < 0 || r.load().active() < 0 || r.load().queued() < 0) {
    return bad("negative load");
  }
  return absl::OkStatus();
}

}  // namespace

DeviceRegistry::DeviceRegistry(RegistryOptions options, Clock* clock)
    : options_(options), clock_(clock) {}

absl::StatusOr<v1::RegisterResponse> DeviceRegistry::Register(const v1::RegisterRequest& request) {
  if (request.protocol_version().major() != kProtocolMajor) {
    return absl::FailedPreconditionError(absl::StrCat(
        "protocol version ", request.protocol_version().major(), ".",
        request.protocol_version().minor(), " is not supported by this coordinator (speaks ",
        kProtocolMajor, ".", kProtocolMinor, "); upgrade the worker or the coordinator"));
  }
  if (auto s = ValidateAdvertisement(request, options_.max_models_per_device); !s.ok()) return s;

  const absl::Time now = clock_->Now();
  v1::RegisterResponse response;
  response.set_lease_id(NewUuid());
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  response.mutable_protocol_version()->set_major(kProtocolMajor);
  response.mutable_protocol_version()->set_minor(kProtocolMinor);

  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  auto it = devices_.find(request.device_id());
  if (it == devices_.end() && static_cast<int>(devices_.size()) >= options_.max_devices) {
    return absl::ResourceExhaustedError("the registry is full");
  }
  Entry& e = devices_[request.device_id()];
  const int inflight = e.inflight;  // attempts already running survive a re-register
  e = Entry{};
  e.inflight = inflight;
  e.lease_id = response.lease_id();
  e.last_heartbeat = now;
  e.info.set_device_id(request.device_id());
  e.info.set_provider_id(request.provider_id());
  e.info.set_address(request.address());
  *e.info.mutable_models() = request.models();
  *e.info.mutable_load() = request.load();
  if (e.info.load().max_concurrency() == 0) e.info.mutable_load()->set_max_concurrency(1);
  e.info.set_simulated(request.simulated());
  e.info.set_registered_unix_ms(absl::ToUnixMillis(now));
  spdlog::info("device {} registered (provider {}, {} model(s), {}{})", request.device_id(),
               request.provider_id(), request.models_size(), request.address(),
               request.simulated() ? ", simulated" : "");
  return response;
}

v1::HeartbeatResponse DeviceRegistry::Heartbeat(const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(request.device_id());
  if (it == devices_.end() || it->second.lease_id != request.lease_id() ||
      StateAt(it->second, now) == v1::DEVICE_STATE_UNSPECIFIED) {
    response.set_reregister(true);
    return response;
  }
  it->second.last_heartbeat = now;
  v1::DeviceLoad load = request.load();
  if (load.max_concurrency() <= 0) load.set_max_concurrency(it->second.info.load().max_concurrency());
  *it->second.info.mutable_load() = load;
  return response;
}

absl::Status DeviceRegistry::Deregister(const v1::DeregisterRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(request.device_id());
  if (it == devices_.end() || it->second.lease_id != request.lease_id()) {
    return absl::NotFoundError(absl::StrCat("no lease ", request.lease_id(), " for device ",
                                            request.device_id()));
  }
  devices_.erase(it);
  spdlog::info("device {} deregistered", request.device_id());
  return absl::OkStatus();
}

v1::DeviceState DeviceRegistry::StateAt(const Entry& e, absl::Time now) const {
  const absl::Duration silent = now - e.last_heartbeat;
  // Half an interval of grace absorbs scheduling jitter before a device counts as late.
  if (silent <= options_.heartbeat_interval * 1.5) return v1::DEVICE_STATE_HEALTHY;
  if (silent <= options_.heartbeat_interval * options_.missed_heartbeats_to_expire) {
    return v1::DEVICE_STATE_SUSPECT;
  }
  return v1::DEVICE_STATE_UNSPECIFIED;
}

void DeviceRegistry::ExpireLocked(absl::Time now) {
  for (auto it = devices_.begin(); it != devices_.end();) {
    if (StateAt(it->second, now) == v1::DEVICE_STATE_UNSPECIFIED) {
      spdlog::warn("device {} expired (no heartbeat for {})", it->first,
                   absl::FormatDuration(now - it->second.last_heartbeat));
      it = devices_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<v1::DeviceInfo> DeviceRegistry::Snapshot() {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  std::vector<v1::DeviceInfo> out;
  out.reserve(devices_.size());
  for (const auto& [id, e] : devices_) {
    v1::DeviceInfo& info = out.emplace_back(e.info);
    info.set_state(StateAt(e, now));
    info.set_last_heartbeat_unix_ms(absl::ToUnixMillis(e.last_heartbeat));
    info.set_coordinator_inflight(e.inflight);
  }
  return out;
}

void DeviceRegistry::AddInflight(const std::string& device_id, int delta) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return;
  it->second.inflight += delta;
  // The last heartbeat counted our attempts too: keep its figure current until the next one,
  // so a device that just finished our work does not look busy for up to an interval.
  v1::DeviceLoad* load = it->second.info.mutable_load();
  load->set_active(std::max(0, load->active() + delta));
}

}  // namespace loom
