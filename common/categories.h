// File: common/categories.h
// Names of the eight task categories as they appear in configs, JSON and CLIs ("code",
// "reasoning", ...), and of the trust tiers ("community", "verified", "owned").
#ifndef LOOM_COMMON_CATEGORIES_H_
#define LOOM_COMMON_CATEGORIES_H_

#include <array>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "loom/v1/common.pb.h"

namespace loom {

inline constexpr std::array<v1::TaskCategory, 8> kAllCategories = {
    v1::TASK_CATEGORY_CODE,          v1::TASK_CATEGORY_REASONING,   v1::TASK_CATEGORY_CREATIVE,
    v1::TASK_CATEGORY_FACTUAL,       v1::TASK_CATEGORY_SUMMARIZATION, v1::TASK_CATEGORY_TRANSLATION,
    v1::TASK_CATEGORY_STRUCTURED,    v1::TASK_CATEGORY_GENERAL};

// "code" for TASK_CATEGORY_CODE; "unspecified" for anything else.
std::string CategoryName(v1::TaskCategory category);
// The category named `name` (case-insensitive), or nullopt.
std::optional<v1::TaskCategory> ParseCategory(absl::string_view name);

// "community", "verified", "owned" (and "any" for UNSPECIFIED); ParseTrustTier is its inverse
// ("any" and "" are UNSPECIFIED; nullopt for other names).
const char* TrustTierName(v1::TrustTier tier);
std::optional<v1::TrustTier> ParseTrustTier(absl::string_view name);

}  // namespace loom

#endif  // LOOM_COMMON_CATEGORIES_H_
