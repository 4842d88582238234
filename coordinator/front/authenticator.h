// File: coordinator/front/authenticator.h
// Who pays for a request: the client account bound to its API key ("Authorization: Bearer
// loom_..." on HTTP, the same as gRPC metadata). Without a key, the request is refused unless
// the operator named an account for anonymous use (--allow_anonymous, for local demos).
// A provider's key (loom-ledger keys create --provider=ID) reads that provider's earnings and
// never spends: ClientFor refuses it (PERMISSION_DENIED), ProviderFor accepts only it.
//
// Thread-safe. Lookups go to the ledger (keys are stored there, hashed).
#ifndef LOOM_COORDINATOR_FRONT_AUTHENTICATOR_H_
#define LOOM_COORDINATOR_FRONT_AUTHENTICATOR_H_

#include <string>

#include "absl/status/statusor.h"
#include "ledger/ledger_store.h"

namespace loom {

class Authenticator {
 public:
  // `anonymous_client`: the client name charged for requests without a key; empty = refuse.
  Authenticator(LedgerStore* ledger, std::string anonymous_client)
      : ledger_(ledger), anonymous_client_(std::move(anonymous_client)) {}

  // The client name (without "client:") for an Authorization header value ("" when absent).
  // UNAUTHENTICATED for a missing, malformed, unknown or revoked key.
  absl::StatusOr<std::string> ClientFor(const std::string& authorization) const;
  // The provider id of a provider's key. UNAUTHENTICATED as above (no anonymous use);
  // PERMISSION_DENIED for a client's key.
  absl::StatusOr<std::string> ProviderFor(const std::string& authorization) const;
  // The ledger's earnings of `provider_id` (all time).
  absl::StatusOr<PayoutRow> EarningsOf(const std::string& provider_id) const;

 private:
  LedgerStore* const ledger_;
  const std::string anonymous_client_;
  absl::StatusOr<std::string> AccountFor(const std::string& authorization) const;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_AUTHENTICATOR_H_
