#include "coordinator/front/authenticator.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace loom {

absl::StatusOr<std::string> Authenticator::ClientFor(const std::string& authorization) const {
  if (authorization.empty()) {
    if (!anonymous_client_.empty()) return anonymous_client_;
    return absl::UnauthenticatedError(
        "missing API key: send 'Authorization: Bearer <key>' (loom-ledger keys create)");
  }
  LOOM_ASSIGN_OR_RETURN(const std::string account, AccountFor(authorization));
  if (!absl::StartsWith(account, "client:")) {
    return absl::PermissionDeniedError(absl::StrCat(
        "this key belongs to ", account, ": it reads that provider's earnings "
        "(GET /loom/v1/earnings) and cannot pay for requests"));
  }
  return std::string(absl::StripPrefix(account, "client:"));
}

absl::StatusOr<std::string> Authenticator::ProviderFor(const std::string& authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing API key: send 'Authorization: Bearer <key>' with a provider's key "
        "(loom-ledger keys create --provider=ID)");
  }
  LOOM_ASSIGN_OR_RETURN(const std::string account, AccountFor(authorization));
  if (!absl::StartsWith(account, "provider:")) {
    return absl::PermissionDeniedError(
        "this is a client's key; earnings are shown to a provider's key "
        "(loom-ledger keys create --provider=ID)");
  }
  return std::string(absl::StripPrefix(account, "provider:"));
}

absl::StatusOr<PayoutRow> Authenticator::EarningsOf(const std::string& provider_id) const {
  LOOM_ASSIGN_OR_RETURN(std::vector<PayoutRow> rows,
                        ledger_->Payouts({.provider_id = provider_id}));
  for (const PayoutRow& row : rows) {
    if (row.provider_id == provider_id) return row;
  }
  PayoutRow none;
  none.provider_id = provider_id;
  return none;  // nothing earned yet
}

absl::StatusOr<std::string> Authenticator::AccountFor(const std::string& authorization) const {
  absl::string_view key = authorization;
  if (!absl::ConsumePrefix(&key, "Bearer ") && !absl::ConsumePrefix(&key, "bearer ")) {
    return absl::UnauthenticatedError("the Authorization header must be 'Bearer <key>'");
  }
  return ledger_->Authenticate(std::string(key));
}

}  // namespace loom
