#include "ledger/pricing.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace loom {

int64_t PricePer1kMicro(const v1::ModelInfo& model) {
  if (model.price_per_1k_micro() > 0) return model.price_per_1k_micro();
  double by_size = std::ceil(std::max(0.0, model.parameters_b()) * 1000.0);
  return std::max<int64_t>(500, static_cast<int64_t>(by_size));
}

int64_t CreditsForTokens(int64_t tokens, int64_t price_per_1k_micro) {
  if (tokens <= 0 || price_per_1k_micro <= 0) return 0;
  // tokens and prices are bounded far below 2^31 each, so the product fits in int64.
  return tokens * price_per_1k_micro / 1000;
}

std::string FormatCredits(int64_t micro) {
  const char* sign = micro < 0 ? "-" : "";
  uint64_t abs = micro < 0 ? static_cast<uint64_t>(-(micro + 1)) + 1 : static_cast<uint64_t>(micro);
  return absl::StrFormat("%s%d.%06d", sign, abs / kMicroPerCredit, abs % kMicroPerCredit);
}

}  // namespace loom
