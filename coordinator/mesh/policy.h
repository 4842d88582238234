// File: coordinator/mesh/policy.h
// Per-request policies: what a client may demand of the devices that serve it (DESIGN.md,
// "Policies"). A request names a policy as its model ("loom-fast") or in `loom.policy.name`,
// and may set any field itself (CompleteRequest.policy); its fields override the named one's.
//
//   PolicyBook book = *PolicyBook::FromConfig(config);   // built-ins + the operator's file
//   absl::StatusOr<RequestPolicy> p = book.Resolve(request);
//   selector.SelectForCategories(registry, {category}, excluded, &p->For(spec.private_data));
//
// Built-in named policies (the operator's --policy_config may replace or add to them):
//   loom-auto     the selector as it always was: best affinity on a lightly loaded device
//   loom-fast     quality 1, latency 2: fast devices (tokens/s, time to first token)
//   loom-cheap    quality 1, cost 2: cheap models
//   loom-green    quality 1, carbon 2: devices on low-carbon power
//   loom-private  trust >= verified for every call: only devices of providers the operator
//                 has checked (or owns) ever see the request
// Hard limits a device must meet and soft weights: selection_policy.h. max_cost bounds the
// whole request (its reservation, the ledger's fee included); see RequestRunner.
//
// Private data: trust and region limits bind every call unless the policy says private_only;
// then they bind only the calls that see the client's own material: the request as a whole
// (passthrough, compete, the decomposer, the router, the synthesis, the judge) and the
// sub-tasks marked private_data (the rule decomposer marks a sub-task that carries pasted
// material or personal data; a decomposer model may mark more, never fewer).
//
// Carbon estimate on the receipt: kWhPer1kTokensPerBillionParams watt-hours per 1,000 output
// tokens per billion parameters (about 3-4 J per token for a 65B model on a data-centre GPU, in
// Samsi et al., "From words to watts", 2023, rounded up for consumer devices), times the
// device's declared intensity. An estimate, labelled so; calls on devices with no known
// intensity are counted apart.
//
// Thread-safe (immutable after construction).
#ifndef LOOM_COORDINATOR_MESH_POLICY_H_
#define LOOM_COORDINATOR_MESH_POLICY_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/auto_model.h"
#include "coordinator/mesh/selection_policy.h"
#include "loom/v1/config.pb.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

inline constexpr const char* kDefaultPolicy = kAutoModel;
inline constexpr double kWhPer1kTokensPerBillionParams = 0.02;

// Grams CO2e for `tokens` output tokens of a model of `parameters_b` billion parameters on
// power of `g_per_kwh` (the estimate above).
double EstimatedCarbonGrams(int64_t tokens, double parameters_b, double g_per_kwh);

// True when `text` shows personal data or secrets: an e-mail address, a phone or account
// number (9+ digits), an IBAN, a private key, or words such as "password" and "my address".
bool CarriesPersonalData(absl::string_view text);

// One request's policy, resolved.
struct RequestPolicy {
  std::string name = kDefaultPolicy;
  SelectionPolicy all;    // calls that see the client's own material
  SelectionPolicy wide;   // the other calls (the same as `all` unless private_only)
  bool private_only = false;
  int64_t max_cost_micro = 0;  // 0: no limit
  const SelectionPolicy& For(bool private_data) const { return private_data ? all : wide; }
  // The hard limits in words, max_cost included ("trust >= verified", "cost <= 0.05 credits").
  std::vector<std::string> LimitTexts() const;
  bool HasLimits() const { return all.HasLimits() || max_cost_micro > 0; }
};

class PolicyBook {
 public:
  // The built-in named policies, every provider COMMUNITY, no carbon table.
  PolicyBook();
  // The built-ins with `config` applied (its policies replace or add by name). INVALID_ARGUMENT
  // naming the field for an invalid policy, tier or intensity.
  static absl::StatusOr<PolicyBook> FromConfig(const v1::PolicyConfig& config);

  // INVALID_ARGUMENT naming the field (`where` prefixes it: "loom.policy").
  static absl::Status Validate(const v1::Policy& policy, absl::string_view where);

  bool IsNamed(absl::string_view name) const { return named_.count(std::string(name)) > 0; }
  const std::map<std::string, v1::Policy>& named() const { return named_; }
  // What a named policy does, in a line (for /v1/models).
  static std::string Describe(const v1::Policy& policy);

  // The named policy (request.policy.name; else the request's model when it is a policy
  // name; else loom-auto) with the request's own fields over it. INVALID_ARGUMENT for an
  // unknown name or an invalid field.
  absl::StatusOr<RequestPolicy> Resolve(const v1::CompleteRequest& request) const;

  // What the registry stamps on devices (RegistryOptions).
  const std::map<std::string, v1::TrustTier>& provider_trust() const { return provider_trust_; }
  v1::TrustTier default_trust() const { return default_trust_; }
  const std::map<std::string, double>& carbon_by_region() const { return carbon_by_region_; }

 private:
  void CacheDefault();

  std::map<std::string, v1::Policy> named_;
  std::optional<RequestPolicy> default_;  // Resolve of a request that asks for nothing
  std::map<std::string, v1::TrustTier> provider_trust_;
  v1::TrustTier default_trust_ = v1::TRUST_TIER_COMMUNITY;
  std::map<std::string, double> carbon_by_region_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_POLICY_H_
