// File: coordinator/authenticator.h
// Who pays for a request: the client account bound to its API key ("Authorization: Bearer
// loom_..." on HTTP, the same as gRPC metadata). Without a key, the request is refused unless
// the operator named an account for anonymous use (--allow_anonymous, for local demos).
//
// Thread-safe. Lookups go to the ledger (keys are stored there, hashed).
#ifndef LOOM_COORDINATOR_AUTHENTICATOR_H_
#define LOOM_COORDINATOR_AUTHENTICATOR_H_

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

 private:
  LedgerStore* const ledger_;
  const std::string anonymous_client_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_AUTHENTICATOR_H_
