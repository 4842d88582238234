#include "coordinator/authenticator.h"

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace loom {

absl::StatusOr<std::string> Authenticator::ClientFor(const std::string& authorization) const {
  if (authorization.empty()) {
    if (!anonymous_client_.empty()) return anonymous_client_;
    return absl::UnauthenticatedError(
        "missing API key: send 'Authorization: Bearer <key>' (loom-ledger keys create)");
  }
  absl::string_view key = authorization;
  if (!absl::ConsumePrefix(&key, "Bearer ") && !absl::ConsumePrefix(&key, "bearer ")) {
    return absl::UnauthenticatedError("the Authorization header must be 'Bearer <key>'");
  }
  absl::StatusOr<std::string> account = ledger_->Authenticate(std::string(key));
  if (!account.ok()) return account.status();
  return std::string(absl::StripPrefix(*account, "client:"));
}

}  // namespace loom
