// File: ledger/ledger_rules.h
// The checks and arithmetic every ledger engine applies the same way (SQLite, PostgreSQL): what
// a valid settlement, reservation, transfer, account id, verdict and outcome look like, the
// fee, the insufficient-credits error, and how a verdict is shared among an answer's parts.
// An engine calls these before it writes anything, so both refuse the same input with the
// same message.
//
// Pure functions; thread-safe.
#ifndef LOOM_LEDGER_LEDGER_RULES_H_
#define LOOM_LEDGER_LEDGER_RULES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ledger/ledger_store.h"

namespace loom::ledger_rules {

// INVALID_ARGUMENT unless `id` is client:NAME, provider:ID, mint, payout or fee.
absl::Status CheckAccountId(const std::string& id);
absl::Status CheckSettlement(const SettlementRequest& request);
absl::Status CheckReservation(const std::string& request_id, const std::string& account,
                              int64_t amount_micro);
// Grant and payout: a positive amount and a reference.
absl::Status CheckTransfer(const std::string& kind, int64_t amount_micro,
                           const std::string& reference);
absl::Status CheckGrantAccount(const std::string& account);
absl::Status CheckProviderId(const std::string& provider_id);
absl::Status CheckVerdict(const FeedbackVerdict& verdict);
absl::Status CheckOutcomes(const std::vector<OutcomeDelta>& deltas);
// A listing's row limit: 1-1000.
absl::Status CheckListLimit(int limit);

// fee_bps of `credits_micro`, rounded down, without overflow. Monotone in credits.
int64_t Fee(int fee_bps, int64_t credits_micro);

// FAILED_PRECONDITION with the insufficient-credits payload (HTTP 402).
absl::Status InsufficientCredits(const std::string& message);

// A verdict on the whole answer is shared equally by its parts (each a model and category);
// a sub-task named alone takes all of it.
void ShareVerdict(bool good, std::vector<OutcomeDelta>* parts);

}  // namespace loom::ledger_rules

#endif  // LOOM_LEDGER_LEDGER_RULES_H_
