#include "common/categories.h"

#include "absl/strings/ascii.h"

namespace loom {

std::string CategoryName(v1::TaskCategory category) {
  switch (category) {
    case v1::TASK_CATEGORY_CODE: return "code";
    case v1::TASK_CATEGORY_REASONING: return "reasoning";
    case v1::TASK_CATEGORY_CREATIVE: return "creative";
    case v1::TASK_CATEGORY_FACTUAL: return "factual";
    case v1::TASK_CATEGORY_SUMMARIZATION: return "summarization";
    case v1::TASK_CATEGORY_TRANSLATION: return "translation";
    case v1::TASK_CATEGORY_STRUCTURED: return "structured";
    case v1::TASK_CATEGORY_GENERAL: return "general";
    default: return "unspecified";
  }
}

std::optional<v1::TaskCategory> ParseCategory(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (v1::TaskCategory c : kAllCategories) {
    if (CategoryName(c) == lower) return c;
  }
  return std::nullopt;
}

const char* TrustTierName(v1::TrustTier tier) {
  switch (tier) {
    case v1::TRUST_TIER_COMMUNITY: return "community";
    case v1::TRUST_TIER_VERIFIED: return "verified";
    case v1::TRUST_TIER_OWNED: return "owned";
    default: return "any";
  }
}

std::optional<v1::TrustTier> ParseTrustTier(absl::string_view name) {
  if (name == "community") return v1::TRUST_TIER_COMMUNITY;
  if (name == "verified") return v1::TRUST_TIER_VERIFIED;
  if (name == "owned") return v1::TRUST_TIER_OWNED;
  if (name == "any" || name.empty()) return v1::TRUST_TIER_UNSPECIFIED;
  return std::nullopt;
}

}  // namespace loom
