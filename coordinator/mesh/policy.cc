#include "coordinator/mesh/policy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/categories.h"
#include "common/ids.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

absl::Status Bad(absl::string_view where, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", where, where.empty() ? "" : ".", field,
                                                 "' must be ", what));
}

v1::Policy Weighted(double quality, double cost, double latency, double carbon) {
  v1::Policy p;
  p.mutable_weights()->set_quality(quality);
  p.mutable_weights()->set_cost(cost);
  p.mutable_weights()->set_latency(latency);
  p.mutable_weights()->set_carbon(carbon);
  return p;
}

std::map<std::string, v1::Policy> Builtins() {
  std::map<std::string, v1::Policy> out;
  out[kDefaultPolicy] = Weighted(1, 0, 0, 0);
  out["loom-fast"] = Weighted(1, 0, 2, 0);
  out["loom-cheap"] = Weighted(1, 2, 0, 0);
  out["loom-green"] = Weighted(1, 0, 0, 2);
  v1::Policy priv = Weighted(1, 0, 0, 0);
  priv.set_trust(v1::TRUST_TIER_VERIFIED);
  out["loom-private"] = priv;
  for (auto& [name, p] : out) p.set_name(name);
  return out;
}

// `over`'s set fields replace `base`'s.
void Overlay(const v1::Policy& over, v1::Policy* base) {
  if (over.has_max_price_per_1k_micro()) base->set_max_price_per_1k_micro(over.max_price_per_1k_micro());
  if (over.has_max_cost_micro()) base->set_max_cost_micro(over.max_cost_micro());
  if (over.has_min_tokens_per_s()) base->set_min_tokens_per_s(over.min_tokens_per_s());
  if (over.has_max_ttft_ms()) base->set_max_ttft_ms(over.max_ttft_ms());
  if (over.trust() != v1::TRUST_TIER_UNSPECIFIED) base->set_trust(over.trust());
  if (!over.regions().empty()) *base->mutable_regions() = over.regions();
  if (over.has_private_only()) base->set_private_only(over.private_only());
  if (over.has_weights()) *base->mutable_weights() = over.weights();
}

// Digits in a row, allowing the separators phone and account numbers are written with.
bool HasLongNumber(absl::string_view text) {
  int digits = 0;
  for (char c : text) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      if (++digits >= 9) return true;
    } else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')' && c != '/') {
      digits = 0;
    }
  }
  return false;
}

bool HasEmail(absl::string_view text) {
  for (size_t at = text.find('@'); at != absl::string_view::npos; at = text.find('@', at + 1)) {
    if (at == 0 || !absl::ascii_isalnum(static_cast<unsigned char>(text[at - 1]))) continue;
    size_t end = at + 1;
    while (end < text.size() && (absl::ascii_isalnum(static_cast<unsigned char>(text[end])) ||
                                 text[end] == '-' || text[end] == '.')) {
      ++end;
    }
    const absl::string_view domain = text.substr(at + 1, end - at - 1);
    const size_t dot = domain.rfind('.');
    if (dot != absl::string_view::npos && dot > 0 && domain.size() - dot - 1 >= 2) {
      return true;
    }
  }
  return false;
}

// Two letters, two digits, then 10-30 letters or digits: the shape of an IBAN.
bool HasIban(absl::string_view text) {
  for (size_t i = 0; i + 14 <= text.size(); ++i) {
    if (i > 0 && absl::ascii_isalnum(static_cast<unsigned char>(text[i - 1]))) continue;
    if (!absl::ascii_isupper(static_cast<unsigned char>(text[i])) ||
        !absl::ascii_isupper(static_cast<unsigned char>(text[i + 1])) ||
        !absl::ascii_isdigit(static_cast<unsigned char>(text[i + 2])) ||
        !absl::ascii_isdigit(static_cast<unsigned char>(text[i + 3]))) {
      continue;
    }
    size_t n = 0;
    for (size_t j = i + 4; j < text.size() && n < 31; ++j) {
      if (text[j] == ' ') continue;
      if (!absl::ascii_isalnum(static_cast<unsigned char>(text[j]))) break;
      ++n;
    }
    if (n >= 10) return true;
  }
  return false;
}

constexpr absl::string_view kPersonalWords[] = {
    "password", "passwort", "mot de passe", "contraseña", "api key", "api_key", "apikey",
    "secret key", "access token", "private key", "-----begin", "social security", "ssn:",
    "date of birth", "my address", "home address", "credit card", "card number", "iban",
    "passport number", "medical record", "diagnosis", "my salary", "bank account",
};

}  // namespace

double EstimatedCarbonGrams(int64_t tokens, double parameters_b, double g_per_kwh) {
  if (tokens <= 0 || g_per_kwh <= 0) return 0;
  const double wh = static_cast<double>(tokens) / 1000.0 * kWhPer1kTokensPerBillionParams *
                    std::max(parameters_b, 0.5);
  return wh / 1000.0 * g_per_kwh;
}

bool CarriesPersonalData(absl::string_view text) {
  if (HasEmail(text) || HasLongNumber(text) || HasIban(text)) return true;
  const std::string lower = absl::AsciiStrToLower(text);
  for (absl::string_view word : kPersonalWords) {
    if (absl::StrContains(lower, word)) return true;
  }
  return false;
}

std::vector<std::string> RequestPolicy::LimitTexts() const {
  std::vector<std::string> out = all.LimitTexts();
  if (max_cost_micro > 0) {
    out.push_back(absl::StrCat("cost <= ", FormatCredits(max_cost_micro), " credits"));
  }
  if (private_only && (all.min_trust != v1::TRUST_TIER_UNSPECIFIED || !all.regions.empty())) {
    out.push_back("trust and region limits bind only calls that see the client's own material");
  }
  return out;
}

PolicyBook::PolicyBook() : named_(Builtins()) { CacheDefault(); }

void PolicyBook::CacheDefault() {
  default_.reset();
  absl::StatusOr<RequestPolicy> resolved = Resolve(v1::CompleteRequest());
  if (resolved.ok()) default_ = *std::move(resolved);
}

absl::Status PolicyBook::Validate(const v1::Policy& p, absl::string_view where) {
  if (p.has_max_price_per_1k_micro() && p.max_price_per_1k_micro() <= 0) {
    return Bad(where, "max_price_per_1k", "a positive number of credits");
  }
  if (p.has_max_cost_micro() && p.max_cost_micro() <= 0) {
    return Bad(where, "max_cost", "a positive number of credits");
  }
  if (p.has_min_tokens_per_s() &&
      (!std::isfinite(p.min_tokens_per_s()) || p.min_tokens_per_s() <= 0 ||
       p.min_tokens_per_s() > 1e6)) {
    return Bad(where, "min_tokens_per_s", "a number above 0 and at most 1000000");
  }
  if (p.has_max_ttft_ms() && (p.max_ttft_ms() <= 0 || p.max_ttft_ms() > 3'600'000)) {
    return Bad(where, "max_ttft_ms", "a number of milliseconds from 1 to 3600000");
  }
  if (!v1::TrustTier_IsValid(p.trust())) {
    return Bad(where, "trust", "community, verified or owned");
  }
  if (p.regions_size() > 64) return Bad(where, "regions", "at most 64 regions");
  for (const std::string& r : p.regions()) {
    if (!IsValidRegion(r)) return Bad(where, "regions", "names of 1-32 characters of a-z, 0-9 and -");
  }
  if (p.has_weights()) {
    const auto& w = p.weights();
    double sum = 0;
    for (double v : {w.quality(), w.cost(), w.latency(), w.carbon()}) {
      if (!std::isfinite(v) || v < 0 || v > 1000) {
        return Bad(where, "weights", "numbers from 0 to 1000 (quality, cost, latency, carbon)");
      }
      sum += v;
    }
    if (sum <= 0) return Bad(where, "weights", "not all zero");
  }
  return absl::OkStatus();
}

absl::StatusOr<PolicyBook> PolicyBook::FromConfig(const v1::PolicyConfig& config) {
  PolicyBook book;
  for (int i = 0; i < config.policies_size(); ++i) {
    const v1::Policy& p = config.policies(i);
    const std::string where = absl::StrCat("policies[", i, "]");
    if (p.name().empty() || p.name().size() > 64) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".name: 1-64 characters"));
    }
    if (absl::Status s = Validate(p, where); !s.ok()) return s;
    v1::Policy named = p;
    if (!named.has_weights()) named.mutable_weights()->set_quality(1);
    book.named_[p.name()] = std::move(named);
  }
  for (const auto& [provider, tier] : config.provider_trust()) {
    if (tier == v1::TRUST_TIER_UNSPECIFIED || !v1::TrustTier_IsValid(tier)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "provider_trust.", provider, ": TRUST_TIER_COMMUNITY, _VERIFIED or _OWNED"));
    }
    book.provider_trust_[provider] = tier;
  }
  if (config.default_trust() != v1::TRUST_TIER_UNSPECIFIED) {
    book.default_trust_ = config.default_trust();
  }
  for (const auto& [region, g] : config.carbon_by_region()) {
    if (!IsValidRegion(region)) {
      return absl::InvalidArgumentError(absl::StrCat("carbon_by_region.", region,
                                                     ": a region of 1-32 characters of a-z, 0-9, -"));
    }
    if (!std::isfinite(g) || g < 0 || g > 2000) {
      return absl::InvalidArgumentError(
          absl::StrCat("carbon_by_region.", region, ": gCO2e/kWh from 0 to 2000"));
    }
    book.carbon_by_region_[region] = g;
  }
  book.CacheDefault();  // loom-auto may have been replaced
  return book;
}

std::string PolicyBook::Describe(const v1::Policy& p) {
  std::vector<std::string> parts;
  const auto& w = p.weights();
  if (w.cost() > 0 || w.latency() > 0 || w.carbon() > 0) {
    parts.push_back(absl::StrFormat("weights quality %g, cost %g, latency %g, carbon %g",
                                    w.quality(), w.cost(), w.latency(), w.carbon()));
  } else {
    parts.push_back("the best affinity on a lightly loaded device");
  }
  if (p.trust() != v1::TRUST_TIER_UNSPECIFIED) {
    parts.push_back(absl::StrCat("trust >= ", TrustTierName(p.trust())));
  }
  if (!p.regions().empty()) {
    parts.push_back(absl::StrCat("regions ", absl::StrJoin(p.regions(), ", ")));
  }
  if (p.has_max_price_per_1k_micro()) {
    parts.push_back(absl::StrCat("price <= ", FormatCredits(p.max_price_per_1k_micro()), "/1k"));
  }
  if (p.has_max_cost_micro()) parts.push_back(absl::StrCat("cost <= ", FormatCredits(p.max_cost_micro())));
  if (p.has_min_tokens_per_s()) parts.push_back(absl::StrFormat(">= %g tokens/s", p.min_tokens_per_s()));
  if (p.has_max_ttft_ms()) parts.push_back(absl::StrCat("first token <= ", p.max_ttft_ms(), " ms"));
  if (p.private_only()) parts.push_back("limits bind private data only");
  return absl::StrJoin(parts, "; ");
}

absl::StatusOr<RequestPolicy> PolicyBook::Resolve(const v1::CompleteRequest& request) const {
  const v1::Policy& asked = request.policy();
  // Most requests ask for nothing: the default policy, resolved once.
  if (default_ && !request.has_policy() && !IsNamed(request.model())) return *default_;
  std::string name = asked.name();
  if (name.empty() && IsNamed(request.model())) name = request.model();
  if (name.empty()) name = kDefaultPolicy;
  auto it = named_.find(name);
  if (it == named_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, p] : named_) names.push_back(n);
    return absl::InvalidArgumentError(absl::StrCat("'loom.policy.name': unknown policy '", name,
                                                   "' (this coordinator has ",
                                                   absl::StrJoin(names, ", "), ")"));
  }
  if (absl::Status s = Validate(asked, "loom.policy"); !s.ok()) return s;
  v1::Policy merged = it->second;
  Overlay(asked, &merged);
  RequestPolicy out;
  out.name = name;
  SelectionPolicy& all = out.all;
  all.name = name;
  all.max_price_per_1k_micro = merged.max_price_per_1k_micro();
  all.min_tokens_per_s = merged.min_tokens_per_s();
  all.max_ttft_ms = merged.max_ttft_ms();
  all.min_trust = merged.trust();
  all.regions.assign(merged.regions().begin(), merged.regions().end());
  std::sort(all.regions.begin(), all.regions.end());
  all.regions.erase(std::unique(all.regions.begin(), all.regions.end()), all.regions.end());
  const auto& w = merged.weights();
  const double sum = w.quality() + w.cost() + w.latency() + w.carbon();
  all.weights = sum > 0 ? std::array<double, 4>{w.quality() / sum, w.cost() / sum,
                                                w.latency() / sum, w.carbon() / sum}
                        : std::array<double, 4>{1, 0, 0, 0};
  out.max_cost_micro = merged.max_cost_micro();
  out.private_only = merged.private_only();
  out.wide = all;
  if (out.private_only) {
    out.wide.min_trust = v1::TRUST_TIER_UNSPECIFIED;
    out.wide.regions.clear();
  }
  return out;
}

}  // namespace loom
