#include "coordinator/pipeline/contributions.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

v1::ContributionRecord Record(const std::string& request_id, const std::string& sub_task_id,
                              v1::ContributionRole role, const CallResult& call, absl::Time now,
                              RecordKind kind) {
  v1::ContributionRecord r;
  r.set_category(kind.category);
  r.set_in_answer(kind.in_answer);
  r.set_request_id(request_id);
  r.set_device_id(call.chosen.device_id);
  r.set_provider_id(call.chosen.provider_id);
  r.set_model(call.chosen.model.name());
  r.set_sub_task_id(sub_task_id);
  r.set_role(role);
  r.set_token_count(call.tokens);
  r.set_credits_micro(CreditsForTokens(call.tokens, PricePer1kMicro(call.chosen.model)));
  r.set_attempt(call.attempt);
  r.set_created_unix_ms(absl::ToUnixMillis(now));
  return r;
}

}  // namespace

void AddRecords(std::vector<v1::ContributionRecord>* records, const std::string& request_id,
                const std::string& sub_task_id, v1::ContributionRole role, const CallResult& call,
                absl::Time now, RecordKind kind) {
  for (const CallResult::Part& part : call.earlier) {
    CallResult paid;
    paid.chosen = part.chosen;
    paid.attempt = part.attempt;
    paid.tokens = part.tokens;
    records->push_back(Record(request_id, sub_task_id, role, paid, now, {kind.category, false}));
  }
  records->push_back(Record(request_id, sub_task_id, role, call, now, kind));
}

int64_t ParticipantCredits(int64_t credits, double share) {
  if (share >= 1.0) return credits;
  return static_cast<int64_t>(std::floor(static_cast<double>(credits) * std::max(0.0, share)));
}

std::string PayoutRule(double share) {
  return absl::StrFormat("winner paid in full; each other candidate %.0f%% of its tokens' price",
                         100 * std::min(1.0, std::max(0.0, share)));
}

int64_t SetWeights(std::vector<v1::ContributionRecord>* records) {
  int64_t total_tokens = 0;
  for (const auto& r : *records) total_tokens += r.token_count();
  for (auto& r : *records) {
    r.set_weight(total_tokens > 0 ? static_cast<double>(r.token_count()) / total_tokens
                                  : 1.0 / records->size());
  }
  return total_tokens;
}

}  // namespace loom
