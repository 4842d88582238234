#include "coordinator/mesh/selection_policy.h"

#include <algorithm>
#include <limits>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/categories.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

// Every policy error's message starts so (IsPolicyUnmet finds it after a stage re-wrapped it).
constexpr char kUnmetPrefix[] = "no device meets the policy";

// The normalised value of `v` in [lo, hi], 1 when `higher_is_better` and v == hi; unknown (v
// <= 0 where `zero_unknown`) scores 0.5; a degenerate range scores 1.
double Normalised(double v, double lo, double hi, bool higher_is_better, bool zero_unknown) {
  if (zero_unknown && v <= 0) return 0.5;
  if (hi <= lo) return 1.0;
  const double t = (v - lo) / (hi - lo);
  return higher_is_better ? t : 1.0 - t;
}

}  // namespace

bool SelectionPolicy::HasLimits() const {
  return max_price_per_1k_micro > 0 || min_tokens_per_s > 0 || max_ttft_ms > 0 ||
         min_trust != v1::TRUST_TIER_UNSPECIFIED || !regions.empty();
}

bool SelectionPolicy::PriceFails(const v1::ModelInfo& model) const {
  return max_price_per_1k_micro > 0 && PricePer1kMicro(model) > max_price_per_1k_micro;
}

std::optional<Limit> SelectionPolicy::DeviceFails(const v1::DeviceInfo& d) const {
  if (min_trust != v1::TRUST_TIER_UNSPECIFIED && d.trust() < min_trust) return Limit::kTrust;
  if (!regions.empty() && !std::binary_search(regions.begin(), regions.end(), d.region())) {
    return Limit::kRegion;
  }
  if (min_tokens_per_s > 0 && d.load().tokens_per_second() < min_tokens_per_s) return Limit::kSpeed;
  if (max_ttft_ms > 0 &&
      (d.observed_ttft_ms() <= 0 || d.observed_ttft_ms() > static_cast<double>(max_ttft_ms))) {
    return Limit::kTtft;
  }
  return std::nullopt;
}

std::string SelectionPolicy::LimitText(Limit limit) const {
  switch (limit) {
    case Limit::kPrice:
      return absl::StrCat("price <= ", FormatCredits(max_price_per_1k_micro), " credits/1k tokens");
    case Limit::kTrust: return absl::StrCat("trust >= ", TrustTierName(min_trust));
    case Limit::kRegion: return absl::StrCat("region in [", absl::StrJoin(regions, ", "), "]");
    case Limit::kSpeed: return absl::StrFormat("speed >= %g tokens/s", min_tokens_per_s);
    case Limit::kTtft: return absl::StrCat("time to first token <= ", max_ttft_ms, " ms");
  }
  return "";
}

std::vector<std::string> SelectionPolicy::LimitTexts() const {
  std::vector<std::string> out;
  if (max_price_per_1k_micro > 0) out.push_back(LimitText(Limit::kPrice));
  if (min_trust != v1::TRUST_TIER_UNSPECIFIED) out.push_back(LimitText(Limit::kTrust));
  if (!regions.empty()) out.push_back(LimitText(Limit::kRegion));
  if (min_tokens_per_s > 0) out.push_back(LimitText(Limit::kSpeed));
  if (max_ttft_ms > 0) out.push_back(LimitText(Limit::kTtft));
  return out;
}

void LimitTally::Count(Limit limit, const std::string& name, int devices) {
  const int i = static_cast<int>(limit);
  counts_[i] += devices;
  if (static_cast<int>(names_[i].size()) < kNamed) names_[i].push_back(name);
}

int LimitTally::total() const {
  int n = 0;
  for (int c : counts_) n += c;
  return n;
}

std::string LimitTally::Text(const SelectionPolicy& policy) const {
  std::vector<std::string> parts;
  for (int i = 0; i < kLimitCount; ++i) {
    if (counts_[i] == 0) continue;
    parts.push_back(absl::StrCat(policy.LimitText(static_cast<Limit>(i)), " left out ",
                                 counts_[i], " device(s) (", absl::StrJoin(names_[i], ", "),
                                 counts_[i] > static_cast<int>(names_[i].size()) ? ", ..." : "",
                                 ")"));
  }
  return absl::StrJoin(parts, "; ");
}

std::vector<WeightedScore> WeightedScores(const SelectionPolicy& policy, double load_weight,
                                          absl::Span<const Factors> in) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double price_lo = kInf, price_hi = -kInf, tps_lo = kInf, tps_hi = -kInf;
  double ttft_lo = kInf, ttft_hi = -kInf, carbon_lo = kInf, carbon_hi = -kInf;
  for (const Factors& f : in) {
    price_lo = std::min(price_lo, static_cast<double>(f.price_per_1k_micro));
    price_hi = std::max(price_hi, static_cast<double>(f.price_per_1k_micro));
    if (f.tokens_per_s > 0) tps_lo = std::min(tps_lo, f.tokens_per_s), tps_hi = std::max(tps_hi, f.tokens_per_s);
    if (f.ttft_ms > 0) ttft_lo = std::min(ttft_lo, f.ttft_ms), ttft_hi = std::max(ttft_hi, f.ttft_ms);
    if (f.carbon > 0) carbon_lo = std::min(carbon_lo, f.carbon), carbon_hi = std::max(carbon_hi, f.carbon);
  }
  const auto& w = policy.weights;
  std::vector<WeightedScore> out;
  out.reserve(in.size());
  for (const Factors& f : in) {
    WeightedScore s;
    s.cost = Normalised(static_cast<double>(f.price_per_1k_micro), price_lo, price_hi, false, false);
    s.latency = (Normalised(f.tokens_per_s, tps_lo, tps_hi, true, true) +
                 Normalised(f.ttft_ms, ttft_lo, ttft_hi, false, true)) / 2;
    s.carbon = Normalised(f.carbon, carbon_lo, carbon_hi, false, true);
    s.score = w[0] * f.affinity + w[1] * s.cost + w[2] * s.latency + w[3] * s.carbon -
              load_weight * f.load;
    out.push_back(s);
  }
  return out;
}

absl::Status PolicyUnmetError(const std::string& message) {
  absl::Status status = absl::FailedPreconditionError(message);
  status.SetPayload(kPolicyUnmetPayload, absl::Cord("1"));
  return status;
}

absl::Status PolicyUnmetError(const SelectionPolicy& policy, const LimitTally& tally,
                              absl::string_view wanted, int devices) {
  return PolicyUnmetError(absl::StrCat(
      kUnmetPrefix, " ", policy.name.empty() ? "of this request" : policy.name, " for ", wanted,
      ": ", tally.Text(policy), " (", devices, " device(s) in the mesh); nothing was charged"));
}

bool IsPolicyUnmet(const absl::Status& status) {
  return status.GetPayload(kPolicyUnmetPayload).has_value() ||
         (absl::IsFailedPrecondition(status) && absl::StrContains(status.message(), kUnmetPrefix));
}

}  // namespace loom
