// File: ledger/ledger_rules.cc
#include "ledger/ledger_rules.h"

#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "ledger/ledger_admin.h"
#include "ledger/ledger_hash.h"

namespace loom {

std::string AccountKind(const std::string& account_id) {
  const size_t colon = account_id.find(':');
  return colon == std::string::npos ? account_id : account_id.substr(0, colon);
}

namespace ledger_rules {

absl::Status CheckAccountId(const std::string& id) {
  const std::string kind = AccountKind(id);
  if (kind != "client" && kind != "provider" && kind != "mint" && kind != "payout" && kind != "fee") {
    return absl::InvalidArgumentError(absl::StrCat(
        "account '", id, "' must be client:NAME, provider:ID, mint, payout or fee"));
  }
  if ((kind == "client" || kind == "provider") && id.size() <= kind.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("account '", id, "' has no name"));
  }
  return absl::OkStatus();
}

absl::Status CheckListLimit(int limit) {
  if (limit < 1 || limit > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("a listing shows 1-1000 rows, not ", limit));
  }
  return absl::OkStatus();
}

absl::Status CheckSettlement(const SettlementRequest& request) {
  if (request.request_id.empty()) return absl::InvalidArgumentError("settle: empty request id");
  if (AccountKind(request.client_account) != "client") {
    return absl::InvalidArgumentError(
        absl::StrCat("settle: '", request.client_account, "' is not a client account"));
  }
  for (const auto& r : request.records) {
    if (r.credits_micro() < 0 || r.token_count() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("settle ", request.request_id, ": negative tokens or credits"));
    }
    if (r.provider_id().empty() || r.device_id().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("settle ", request.request_id, ": record without device or provider"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReservation(const std::string& request_id, const std::string& account,
                              int64_t amount_micro) {
  if (request_id.empty()) return absl::InvalidArgumentError("reserve: empty request id");
  if (AccountKind(account) != "client") {
    return absl::InvalidArgumentError(absl::StrCat("reserve: '", account, "' is not a client account"));
  }
  if (amount_micro < 0) return absl::InvalidArgumentError("reserve: negative amount");
  return absl::OkStatus();
}

absl::Status CheckTransfer(const std::string& kind, int64_t amount_micro,
                           const std::string& reference) {
  if (amount_micro <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(kind, ": the amount must be positive"));
  }
  if (reference.empty()) return absl::InvalidArgumentError(absl::StrCat(kind, ": a reference is required"));
  return absl::OkStatus();
}

absl::Status CheckGrantAccount(const std::string& account) {
  const std::string kind = AccountKind(account);
  if (kind != "client" && kind != "provider") {
    return absl::InvalidArgumentError(absl::StrCat(
        "grant: '", account, "' must be a client:NAME or provider:ID account"));
  }
  return absl::OkStatus();
}

absl::Status CheckProviderId(const std::string& provider_id) {
  if (!IsValidProviderId(provider_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "provider id '", provider_id, "' must be 1-128 of letters, digits, '.', '_' and '-'"));
  }
  return absl::OkStatus();
}

absl::Status CheckVerdict(const FeedbackVerdict& verdict) {
  if (verdict.request_id.empty()) return absl::InvalidArgumentError("feedback: empty request id");
  if (AccountKind(verdict.client_account) != "client") {
    return absl::InvalidArgumentError(
        absl::StrCat("feedback: '", verdict.client_account, "' is not a client account"));
  }
  return absl::OkStatus();
}

absl::Status CheckOutcomes(const std::vector<OutcomeDelta>& deltas) {
  for (const OutcomeDelta& d : deltas) {
    if (d.model.empty() || !(d.good >= 0) || !(d.bad >= 0) || !std::isfinite(d.good) ||
        !std::isfinite(d.bad)) {
      return absl::InvalidArgumentError(
          absl::StrCat("outcomes: bad change for model '", d.model, "'"));
    }
  }
  return absl::OkStatus();
}

int64_t Fee(int fee_bps, int64_t credits_micro) {
  // Split so that no product overflows: credits up to INT64_MAX / 10000 exactly, beyond in
  // whole units of 10000.
  const int64_t bps = fee_bps;
  return credits_micro / 10000 * bps + credits_micro % 10000 * bps / 10000;
}

absl::Status InsufficientCredits(const std::string& message) {
  absl::Status status = absl::FailedPreconditionError(message);
  status.SetPayload(kInsufficientCreditsPayload, absl::Cord("1"));
  return status;
}

void ShareVerdict(bool good, std::vector<OutcomeDelta>* parts) {
  for (OutcomeDelta& d : *parts) {
    (good ? d.good : d.bad) = 1.0 / static_cast<double>(parts->size());
  }
}

}  // namespace ledger_rules
}  // namespace loom
