#include "coordinator/mesh/registry.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/openai_wire.h"
#include "common/protocol.h"
#include "common/spin_lock.h"
#include "common/identity.h"
#include "common/utf8.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

constexpr size_t kMaxName = 128;
constexpr size_t kMaxAddress = 256;

absl::Status ValidateAdvertisement(const v1::RegisterRequest& r, int max_models,
                                   int64_t max_price) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("register ", r.device_id(), ": ", what));
  };
  if (!IsValidId(r.device_id()) || !IsValidId(r.provider_id())) {
    return bad("device_id and provider_id must be 1-128 characters of A-Z a-z 0-9 . _ -");
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
    if (PricePer1kMicro(m) > max_price) {
      return bad(absl::StrCat("model ", m.name(), " asks ", FormatCredits(PricePer1kMicro(m)),
                              " credits per 1k tokens; this coordinator allows at most ",
                              FormatCredits(max_price), " (--max_price_per_1k)"));
    }
  }
  if (!r.region().empty() && !IsValidRegion(r.region())) {
    return bad("region must be 1-32 characters of a-z 0-9 -");
  }
  if (r.has_carbon_g_per_kwh() &&
      (!std::isfinite(r.carbon_g_per_kwh()) || r.carbon_g_per_kwh() < 0 || r.carbon_g_per_kwh() > 2000)) {
    return bad("carbon_g_per_kwh must be from 0 to 2000");
  }
  if (r.load().max_concurrency() < 0 || r.load().active() < 0 || r.load().queued() < 0 ||
      !std::isfinite(r.load().tokens_per_second()) || r.load().tokens_per_second() < 0) {
    return bad("negative or non-finite load");
  }
  return absl::OkStatus();
}

// The device's words about its upstream reach operators' tables and JSON: bounded, valid text.
void SanitizeLoad(v1::DeviceLoad* load) {
  if (load->upstream_problem().empty()) return;
  load->set_upstream_problem(ToValidUtf8(TruncateUtf8(load->upstream_problem(), 300, "...")));
}

bool IsEmbeddingModel(const v1::ModelInfo& m) {
  return std::find(m.capabilities().begin(), m.capabilities().end(), kCapabilityEmbeddings) !=
         m.capabilities().end();
}

}  // namespace

// The devices advertising one model, least loaded first. Guarded by the registry's mu_.
class DeviceRegistry::Group : public ModelGroup {
 public:
  Group(const DeviceRegistry* registry, v1::ModelInfo model)
      : registry_(registry), model_(std::move(model)) {}
  const v1::ModelInfo& model() const override { return model_; }
  int serving() const override { return static_cast<int>(by_load_.size()); }
  bool simulated_only() const override { return real_ == 0; }
  // Only called inside Read, with the registry's lock held.
  void ForEachHealthy(absl::FunctionRef<bool(const v1::DeviceInfo&, double)> visit) const override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (const Entry* e : by_load_) {
      if (registry_->StateAt(*e, registry_->read_now_) != v1::DEVICE_STATE_HEALTHY) continue;
      if (!visit(e->info, e->load)) return;
    }
  }
  void Insert(const Entry* e) {
    by_load_.insert(e);
    if (!e->info.simulated()) ++real_;
  }
  void Erase(const Entry* e) {
    by_load_.erase(e);
    if (!e->info.simulated()) --real_;
  }
  bool empty() const { return by_load_.empty(); }

 private:
  struct ByLoad {
    bool operator()(const Entry* a, const Entry* b) const {
      if (a->load != b->load) return a->load < b->load;
      return a->info.device_id() < b->info.device_id();
    }
  };
  const DeviceRegistry* const registry_;
  const v1::ModelInfo model_;
  std::set<const Entry*, ByLoad> by_load_;
  int real_ = 0;  // non-simulated devices in by_load_
};

bool DeviceRegistry::ByHeartbeat::operator()(const Entry* a, const Entry* b) const {
  if (a->last_heartbeat != b->last_heartbeat) return a->last_heartbeat < b->last_heartbeat;
  return a->info.device_id() < b->info.device_id();
}

DeviceRegistry::DeviceRegistry(RegistryOptions options, Clock* clock)
    : options_(options), clock_(clock) {}

DeviceRegistry::~DeviceRegistry() = default;

void DeviceRegistry::IndexLocked(Entry* e) {
  e->load = ModelSelector::LoadOf(e->info);
  bool added_group = false;
  for (const v1::ModelInfo& m : e->info.models()) {
    if (IsEmbeddingModel(m)) continue;  // never a candidate for a completion
    std::unique_ptr<Group>& g = groups_[ModelKey(m)];
    if (!g) {
      g = std::make_unique<Group>(this, m);
      added_group = true;
    }
    g->Insert(e);
    e->groups.push_back(g.get());
  }
  by_heartbeat_.insert(e);
  if (added_group) {
    group_views_.clear();
    for (const auto& [key, g] : groups_) group_views_.push_back(g.get());
  }
}

void DeviceRegistry::UnindexLocked(Entry* e) {
  bool removed_group = false;
  for (Group* g : e->groups) {
    g->Erase(e);
    if (g->empty()) {
      groups_.erase(ModelKey(g->model()));
      removed_group = true;
    }
  }
  e->groups.clear();
  by_heartbeat_.erase(e);
  if (removed_group) {
    group_views_.clear();
    for (const auto& [key, g] : groups_) group_views_.push_back(g.get());
  }
}

void DeviceRegistry::UpdateLoadLocked(Entry* e) {
  const double load = ModelSelector::LoadOf(e->info);
  if (load == e->load) return;
  for (Group* g : e->groups) g->Erase(e);
  e->load = load;
  for (Group* g : e->groups) g->Insert(e);
}

void DeviceRegistry::EraseLocked(std::map<std::string, Entry>::iterator it) {
  UnindexLocked(&it->second);
  devices_.erase(it);
}

absl::StatusOr<v1::RegisterResponse> DeviceRegistry::Register(const v1::RegisterRequest& request) {
  if (request.protocol_version().major() != kProtocolMajor) {
    return absl::FailedPreconditionError(absl::StrCat(
        "protocol version ", request.protocol_version().major(), ".",
        request.protocol_version().minor(), " is not supported by this coordinator (speaks ",
        kProtocolMajor, ".", kProtocolMinor, "); upgrade the worker or the coordinator"));
  }
  if (auto s = ValidateAdvertisement(request, options_.max_models_per_device,
                                     options_.max_price_per_1k_micro);
      !s.ok()) {
    return s;
  }

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
  // Attempts already running survive a re-register.
  const int inflight = e.info.coordinator_inflight();
  const int64_t overclaims = e.info.usage_overclaims();
  // This coordinator's measurements survive too.
  const double ttft_ms = e.info.observed_ttft_ms(), failure_rate = e.info.failure_rate();
  const int64_t attempts = e.info.observed_attempts();
  if (it != devices_.end()) UnindexLocked(&e);
  e = Entry{};
  e.lease_id = response.lease_id();
  e.last_heartbeat = now;
  e.info.set_device_id(request.device_id());
  e.info.set_provider_id(request.provider_id());
  e.info.set_address(request.address());
  *e.info.mutable_models() = request.models();
  *e.info.mutable_load() = request.load();
  SanitizeLoad(e.info.mutable_load());
  if (e.info.load().max_concurrency() == 0) e.info.mutable_load()->set_max_concurrency(1);
  if (!e.info.load().upstream_problem().empty()) {
    spdlog::warn("device {} registered but gets no work until its model server can serve: {}",
                 request.device_id(), e.info.load().upstream_problem());
  }
  e.info.set_simulated(request.simulated());
  e.info.set_registered_unix_ms(absl::ToUnixMillis(now));
  e.info.set_coordinator_inflight(inflight);
  e.info.set_usage_overclaims(overclaims);
  e.info.set_observed_ttft_ms(ttft_ms);
  e.info.set_failure_rate(failure_rate);
  e.info.set_observed_attempts(attempts);
  // Policies: the device declares its region and power; its trust is the operator's word.
  e.info.set_region(request.region());
  auto trust = options_.provider_trust.find(request.provider_id());
  e.info.set_trust(trust != options_.provider_trust.end() ? trust->second : options_.default_trust);
  if (request.has_carbon_g_per_kwh()) {
    e.info.set_carbon_g_per_kwh(request.carbon_g_per_kwh());
  } else if (auto c = options_.carbon_by_region.find(request.region());
             c != options_.carbon_by_region.end()) {
    e.info.set_carbon_g_per_kwh(c->second);
  }
  IndexLocked(&e);
  spdlog::info("device {} registered (provider {}, {} model(s), {}{})", request.device_id(),
               request.provider_id(), request.models_size(), request.address(),
               request.simulated() ? ", simulated" : "");
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> DeviceRegistry::Heartbeat(
    const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  const absl::Time now = clock_->Now();
  SpinningMutexLock lock(&mu_);
  auto it = devices_.find(request.device_id());
  if (it == devices_.end() || it->second.lease_id != request.lease_id() ||
      StateAt(it->second, now) == v1::DEVICE_STATE_UNSPECIFIED) {
    response.set_reregister(true);
    return response;
  }
  // A load report is believed only as far as it is possible: a negative count (which would
  // make the device look idle and win every selection) or a speed that is not a finite,
  // non-negative number is refused; more running than it accepts is counted as full.
  const v1::DeviceLoad& reported = request.load();
  if (reported.active() < 0 || reported.queued() < 0 || reported.max_concurrency() < 0 ||
      !std::isfinite(reported.tokens_per_second()) || reported.tokens_per_second() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device ", request.device_id(), ": heartbeat load must be non-negative (active ",
        reported.active(), ", queued ", reported.queued(), ", max ", reported.max_concurrency(),
        ", tokens/s ", reported.tokens_per_second(), ")"));
  }
  Entry& e = it->second;
  if (options_.max_heartbeat_rate > 0 && now - e.last_accepted_heartbeat < min_heartbeat_gap_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "device ", request.device_id(), " heartbeats more often than every ",
        absl::FormatDuration(options_.heartbeat_interval / options_.max_heartbeat_rate)));
  }
  e.last_accepted_heartbeat = now;
  by_heartbeat_.erase(&e);
  e.last_heartbeat = std::max(e.last_heartbeat, now);
  by_heartbeat_.insert(&e);
  v1::DeviceLoad* load = e.info.mutable_load();
  const int max_concurrency = load->max_concurrency();
  const std::string problem = load->upstream_problem();
  *load = request.load();
  SanitizeLoad(load);
  if (problem != load->upstream_problem()) {
    if (load->upstream_problem().empty()) {
      spdlog::info("device {}: its model server serves again; back in rotation", request.device_id());
    } else {
      spdlog::warn("device {} gets no work: {}", request.device_id(), load->upstream_problem());
    }
  }
  if (load->max_concurrency() <= 0) load->set_max_concurrency(max_concurrency);
  if (load->active() > load->max_concurrency()) load->set_active(load->max_concurrency());
  UpdateLoadLocked(&e);
  return response;
}

absl::Status DeviceRegistry::Deregister(const v1::DeregisterRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(request.device_id());
  if (it == devices_.end() || it->second.lease_id != request.lease_id()) {
    return absl::NotFoundError(absl::StrCat("no lease ", request.lease_id(), " for device ",
                                            request.device_id()));
  }
  EraseLocked(it);
  spdlog::info("device {} deregistered", request.device_id());
  return absl::OkStatus();
}

v1::DeviceState DeviceRegistry::StateAt(const Entry& e, absl::Time now) const {
  const absl::Duration silent = now - e.last_heartbeat;
  if (silent <= late_after_) {
    // On time, but its model server cannot serve: kept, and given no work.
    return e.info.load().upstream_problem().empty() ? v1::DEVICE_STATE_HEALTHY
                                                    : v1::DEVICE_STATE_SUSPECT;
  }
  if (silent <= expire_after_) {
    return v1::DEVICE_STATE_SUSPECT;
  }
  return v1::DEVICE_STATE_UNSPECIFIED;
}

void DeviceRegistry::ExpireLocked(absl::Time now) {
  // Oldest heartbeat first: stop at the first device still alive.
  while (!by_heartbeat_.empty()) {
    const Entry* oldest = *by_heartbeat_.begin();
    if (StateAt(*oldest, now) != v1::DEVICE_STATE_UNSPECIFIED) break;
    const std::string id = oldest->info.device_id();
    spdlog::warn("device {} expired (no heartbeat for {})", id,
                 absl::FormatDuration(now - oldest->last_heartbeat));
    EraseLocked(devices_.find(id));
  }
}

std::vector<DeviceRegistry::EmbeddingCandidate> DeviceRegistry::EmbeddingDevices(
    const std::string& model, int* advertised) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  std::vector<std::pair<const Entry*, const v1::ModelInfo*>> found;
  *advertised = 0;
  for (const auto& [id, e] : devices_) {
    for (const v1::ModelInfo& m : e.info.models()) {
      if (m.name() != model || !IsEmbeddingModel(m)) continue;
      ++*advertised;
      if (StateAt(e, now) == v1::DEVICE_STATE_HEALTHY) found.emplace_back(&e, &m);
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    if (a.first->load != b.first->load) return a.first->load < b.first->load;
    return a.first->info.device_id() < b.first->info.device_id();
  });
  std::vector<EmbeddingCandidate> out;
  for (const auto& [e, m] : found) out.push_back({e->info, *m});
  return out;
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
  }
  return out;
}

int DeviceRegistry::Size() {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  return static_cast<int>(devices_.size());
}

void DeviceRegistry::Read(absl::FunctionRef<void(absl::Span<const ModelGroup* const>, int)> body) {
  const absl::Time now = clock_->Now();
  SpinningMutexLock lock(&mu_);  // held for microseconds by heartbeats: spin, do not sleep
  ExpireLocked(now);
  read_now_ = now;
  body(group_views_, static_cast<int>(devices_.size()));
}

void DeviceRegistry::RecordOverclaim(const std::string& device_id) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return;
  it->second.info.set_usage_overclaims(it->second.info.usage_overclaims() + 1);
}

void DeviceRegistry::RecordAttempt(const std::string& device_id, bool ok,
                                   absl::Duration first_output) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return;
  v1::DeviceInfo& info = it->second.info;
  // Moving averages: the first observations count fully, then each one a fifth.
  const int64_t n = info.observed_attempts() + 1;
  const double alpha = std::max(0.2, 1.0 / static_cast<double>(n));
  info.set_observed_attempts(n);
  info.set_failure_rate((1 - alpha) * info.failure_rate() + alpha * (ok ? 0.0 : 1.0));
  if (ok && first_output > absl::ZeroDuration()) {
    const double ms = absl::ToDoubleMilliseconds(first_output);
    info.set_observed_ttft_ms(info.observed_ttft_ms() <= 0
                                  ? ms
                                  : 0.8 * info.observed_ttft_ms() + 0.2 * ms);
  }
}

void DeviceRegistry::AddInflight(const std::string& device_id, int delta) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return;
  Entry& e = it->second;
  e.info.set_coordinator_inflight(e.info.coordinator_inflight() + delta);
  // The last heartbeat counted our attempts too: keep its figure current until the next one,
  // so a device that just finished our work does not look busy for up to an interval.
  v1::DeviceLoad* load = e.info.mutable_load();
  load->set_active(std::max(0, load->active() + delta));
  UpdateLoadLocked(&e);
}

}  // namespace loom
