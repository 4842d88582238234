// File: coordinator/mesh/registry.h
// The devices in the mesh, with leases. A device registers, then heartbeats every interval;
// one that misses a heartbeat is SUSPECT (no new work) and one silent for
// missed_heartbeats_to_expire intervals is removed. Time comes from the injected Clock, so
// tests advance a SimulatedClock instead of sleeping.
//
//   DeviceRegistry registry({.heartbeat_interval = absl::Seconds(1)}, Clock::Real());
//   auto lease = registry.Register(request);      // RegisterResponse or an error
//   std::vector<v1::DeviceInfo> live = registry.Snapshot();
//
// It is also the selector's CandidateSource (model_selector.h): devices are indexed by model
// advertisement and, within one, by load, and every register, heartbeat, in-flight change and
// expiry updates the index, so choosing a device never copies or scans the registry. Expiry
// is kept in heartbeat order, so sweeping it costs only the devices that actually expire.
//
// Thread-safe. No gRPC here: RegistryService adapts it. Selection reads and heartbeats spin
// briefly for the lock before blocking
// (common/spin_lock.h): it is held for microseconds, and a sleep and wake-up costs more.
#ifndef LOOM_COORDINATOR_MESH_REGISTRY_H_
#define LOOM_COORDINATOR_MESH_REGISTRY_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/mesh/model_selector.h"
#include "loom/v1/registry.pb.h"

namespace loom {

struct RegistryOptions {
  absl::Duration heartbeat_interval = absl::Seconds(1);  // asked of every worker
  int missed_heartbeats_to_expire = 3;  // silent this many intervals -> removed
  int max_devices = 100'000;            // Register beyond this is RESOURCE_EXHAUSTED
  int max_models_per_device = 64;
  // A device heartbeating faster than heartbeat_interval / max_heartbeat_rate is refused
  // (RESOURCE_EXHAUSTED, nothing recorded): one device cannot flood the registry's lock.
  // 0: no limit.
  int max_heartbeat_rate = 4;
  // The most a model may charge per 1,000 output tokens (micro-credits); a device advertising
  // more is refused at Register, so no price can overflow a cost bound or price the whole
  // mesh out of every client's budget. (--max_price_per_1k, in credits.)
  int64_t max_price_per_1k_micro = 100 * 1'000'000;
  // Policies (policy.h): the operator's trust tier per provider id (others: default_trust),
  // stamped on each device at Register, and carbon intensity by region for devices that
  // declare none.
  std::map<std::string, v1::TrustTier> provider_trust;
  v1::TrustTier default_trust = v1::TRUST_TIER_COMMUNITY;
  std::map<std::string, double> carbon_by_region;
};

class DeviceRegistry : public CandidateSource {
 public:
  DeviceRegistry(RegistryOptions options, Clock* clock);
  ~DeviceRegistry() override;

  // Adds or replaces the device (a new lease each time). FAILED_PRECONDITION on a protocol
  // major mismatch, INVALID_ARGUMENT on a malformed advertisement.
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request);
  // Records load. A response with reregister=true when the lease is unknown or expired;
  // RESOURCE_EXHAUSTED (nothing recorded) when the device heartbeats too often.
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  // Removes the device. NOT_FOUND for an unknown lease.
  absl::Status Deregister(const v1::DeregisterRequest& request);

  // Live devices sorted by id, each with its state as of now; expired ones are dropped.
  std::vector<v1::DeviceInfo> Snapshot();
  // The healthy devices serving embedding model `model`, least loaded first; *advertised
  // counts every device advertising it in any state. Embedding models are never in the
  // completion candidates (Read).
  struct EmbeddingCandidate {
    v1::DeviceInfo device;
    v1::ModelInfo model;
  };
  std::vector<EmbeddingCandidate> EmbeddingDevices(const std::string& model, int* advertised);
  // How many live devices there are (expired ones are dropped first).
  int Size();

  // CandidateSource: holds the registry's lock while `body` runs, with states as of now.
  void Read(absl::FunctionRef<void(absl::Span<const ModelGroup* const>, int)> body) override;

  // Counts attempts this coordinator has running on a device, and moves the device's last
  // reported active count by the same delta (clamped at 0), so selection between two
  // heartbeats sees its own assignments start and finish.
  void AddInflight(const std::string& device_id, int delta);
  // Feeds the device's measured figures (DeviceInfo.observed_ttft_ms, failure_rate): one
  // attempt's outcome and, when it produced output, the time to its first output.
  void RecordAttempt(const std::string& device_id, bool ok, absl::Duration first_output);
  // Counts a usage report that claimed more tokens than were received (kept across
  // re-registration, shown as DeviceInfo.usage_overclaims).
  void RecordOverclaim(const std::string& device_id);

 private:
  class Group;
  struct Entry {
    v1::DeviceInfo info;  // coordinator_inflight kept current; state set only in snapshots
    std::string lease_id;
    absl::Time last_heartbeat;
    absl::Time last_accepted_heartbeat = absl::InfinitePast();  // for the rate limit
    double load = 0;              // ModelSelector::LoadOf(info), the key in its groups
    std::vector<Group*> groups;   // one per advertised model
  };
  struct ByHeartbeat {
    bool operator()(const Entry* a, const Entry* b) const;
  };

  // The state of `e` at `now`; DEVICE_STATE_UNSPECIFIED means expired.
  v1::DeviceState StateAt(const Entry& e, absl::Time now) const;
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `e` to the groups of its models and to the expiry order / takes it out of both.
  void IndexLocked(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnindexLocked(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-keys `e` in its groups after its load figures changed.
  void UpdateLoadLocked(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(std::map<std::string, Entry>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const RegistryOptions options_;
  Clock* const clock_;
  // StateAt's thresholds, computed once (it runs for every device a selection visits). Half
  // an interval of grace absorbs scheduling jitter before a device counts as late.
  const absl::Duration late_after_ = options_.heartbeat_interval * 1.5;
  const absl::Duration expire_after_ =
      options_.heartbeat_interval * options_.missed_heartbeats_to_expire;
  const absl::Duration min_heartbeat_gap_ =
      options_.max_heartbeat_rate > 0 ? options_.heartbeat_interval / options_.max_heartbeat_rate
                                      : absl::ZeroDuration();

  absl::Mutex mu_;
  std::map<std::string, Entry> devices_ ABSL_GUARDED_BY(mu_);
  std::set<const Entry*, ByHeartbeat> by_heartbeat_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::map<std::string, std::unique_ptr<Group>> groups_ ABSL_GUARDED_BY(mu_);  // by ModelKey
  std::vector<const ModelGroup*> group_views_ ABSL_GUARDED_BY(mu_);           // groups_, listed
  absl::Time read_now_ ABSL_GUARDED_BY(mu_);  // "now" for the states a Read sees
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_REGISTRY_H_
