// File: coordinator/mesh/selection_policy.h
// One call's policy as the selector applies it (policy.h resolves it from the request and the
// operator's named policies): hard limits a device must meet to be chosen at all, then soft
// weights over what the selector prefers among the devices that do.
//
// Hard limits, checked in this order (a device left out is counted under the first it fails):
//   price    the model's price per 1,000 output tokens <= max_price_per_1k_micro
//   trust    the provider's tier (set by the operator) >= min_trust
//   region   the device's declared region is one of `regions`
//   speed    the device's reported tokens/s >= min_tokens_per_s (unknown: fails)
//   ttft     the time to first token this coordinator measured <= max_ttft_ms (unknown: fails)
// An unknown figure fails its limit: a limit is a promise to the client, and a device that has
// not shown it meets one has not.
//
// Soft weights (quality, cost, latency, carbon; normalised to sum 1): each candidate's factors
// are normalised over the candidates of the one choice, 1 best and 0 worst (all equal: 1), and
//   score = quality x affinity + cost x cheapness + latency x speed + carbon x greenness
//           - load_weight x load
// where speed is the mean of the normalised tokens/s and time to first token, and an unknown
// figure scores 0.5. With quality alone (the default) this is the selector's score as it always
// was: affinity - load_weight x load.
#ifndef LOOM_COORDINATOR_MESH_SELECTION_POLICY_H_
#define LOOM_COORDINATOR_MESH_SELECTION_POLICY_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "loom/v1/common.pb.h"

namespace loom {

enum class Limit { kPrice = 0, kTrust, kRegion, kSpeed, kTtft };
inline constexpr int kLimitCount = 5;

struct SelectionPolicy {
  std::string name;                   // the named policy, for messages ("loom-private")
  int64_t max_price_per_1k_micro = 0;  // 0: no limit
  double min_tokens_per_s = 0;         // 0: no limit
  int64_t max_ttft_ms = 0;             // 0: no limit
  v1::TrustTier min_trust = v1::TRUST_TIER_UNSPECIFIED;
  std::vector<std::string> regions;   // empty: any
  // Normalised weights (sum 1): quality, cost, latency, carbon.
  std::array<double, 4> weights = {1, 0, 0, 0};

  bool HasLimits() const;
  // Weights other than quality alone: the selector weighs more devices per model.
  bool Soft() const { return weights[0] < 1.0; }
  bool PriceFails(const v1::ModelInfo& model) const;
  // The first device limit `device` fails (price is the model's: PriceFails).
  std::optional<Limit> DeviceFails(const v1::DeviceInfo& device) const;
  // "trust >= verified", "price <= 0.002 credits/1k", ...
  std::string LimitText(Limit limit) const;
  std::vector<std::string> LimitTexts() const;
};

// Devices left out of one choice, by the limit that left them out, with the first few named.
class LimitTally {
 public:
  static constexpr int kNamed = 3;  // names kept per limit
  // `devices` left out by `limit`; `name` is the device (or, for a price, the model).
  void Count(Limit limit, const std::string& name, int devices = 1);
  int total() const;
  // "trust >= verified left out 3 device(s) (dev-a, dev-b, dev-c); region in [eu] left out
  // 1 device(s) (dev-d)"
  std::string Text(const SelectionPolicy& policy) const;

 private:
  std::array<int, kLimitCount> counts_{};
  std::array<std::vector<std::string>, kLimitCount> names_;
};

// What soft weights compare for one candidate.
struct Factors {
  double affinity = 0;
  double load = 0;
  int64_t price_per_1k_micro = 0;
  double tokens_per_s = 0;  // 0: unknown
  double ttft_ms = 0;       // 0: unknown
  double carbon = 0;        // gCO2e/kWh; 0: unknown
};

// The normalised factors of one candidate (cheapness, speed, greenness), for reasons.
struct WeightedScore {
  double score = 0;
  double cost = 0, latency = 0, carbon = 0;
};

// Scores `in` by `policy`'s weights (header comment), in the same order.
std::vector<WeightedScore> WeightedScores(const SelectionPolicy& policy, double load_weight,
                                          absl::Span<const Factors> in);

// FAILED_PRECONDITION, carrying kPolicyUnmetPayload, for a choice no device could make under
// the policy's limits: names the policy, each limit and the devices it left out. Nothing is
// charged for a request that fails with it.
inline constexpr char kPolicyUnmetPayload[] = "loom.dev/policy-unmet";
absl::Status PolicyUnmetError(const SelectionPolicy& policy, const LimitTally& tally,
                              absl::string_view wanted, int devices);
absl::Status PolicyUnmetError(const std::string& message);
bool IsPolicyUnmet(const absl::Status& status);

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_SELECTION_POLICY_H_
