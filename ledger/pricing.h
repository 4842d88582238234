// File: ledger/pricing.h
// Money is integer micro-credits (1 credit = 1,000,000 micro-credits), never floating point.
#ifndef LOOM_LEDGER_PRICING_H_
#define LOOM_LEDGER_PRICING_H_

#include <cstdint>
#include <string>

#include "loom/v1/common.pb.h"

namespace loom {

inline constexpr int64_t kMicroPerCredit = 1'000'000;

// The price per 1,000 output tokens of `model`: its advertised price, or when it advertises
// none, 1,000 micro-credits per billion parameters with a floor of 500 (a 7B model: 7,000
// micro-credits = 0.007 credits per 1k tokens).
int64_t PricePer1kMicro(const v1::ModelInfo& model);

// Credits for `tokens` output tokens at `price_per_1k_micro`, rounded down to the micro-credit.
// The client is charged exactly the sum of its records' credits, so rounding never creates or
// destroys money.
int64_t CreditsForTokens(int64_t tokens, int64_t price_per_1k_micro);

// "1.234567" for 1234567 micro-credits.
std::string FormatCredits(int64_t micro);

}  // namespace loom

#endif  // LOOM_LEDGER_PRICING_H_
