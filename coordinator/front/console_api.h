// File: coordinator/front/console_api.h
// What the web console (coordinator/console/, served under /console/ by the HTTP front door)
// reads, as JSON documents, and who may read what:
//   operator  a bearer key equal to --console_operator_key_file's: the whole mesh, every
//             request, all money, verify;
//   client    a client's API key (or anonymous use under --allow_anonymous): the mesh, its own
//             requests (another client's are NOT_FOUND, as if they did not exist), its balance;
//   provider  a provider's key: the mesh and its own earnings; no requests.
// Protobuf messages (devices, plans, attempts) are rendered as proto3 JSON (camelCase), the
// shape `loom ... --json` prints. The front door maps each Status to its HTTP code.
//
// Thread-safe (it only reads what it is given).
#ifndef LOOM_COORDINATOR_FRONT_CONSOLE_API_H_
#define LOOM_COORDINATOR_FRONT_CONSOLE_API_H_

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/front/authenticator.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/pipeline/request_log.h"
#include "coordinator/pipeline/request_runner.h"
#include "ledger/ledger_admin.h"
#include "nlohmann/json.hpp"

namespace loom {

class ConsoleApi {
 public:
  enum class Role { kOperator, kClient, kProvider };
  struct Viewer {
    Role role = Role::kClient;
    std::string name;  // the client's name or the provider's id ("" for the operator)
  };

  // `ledger` may be null (no money views); `operator_key` empty: no operator access.
  ConsoleApi(DeviceRegistry* registry, RequestRunner* runner, const RequestLog* recent,
             const Authenticator* auth, LedgerAdmin* ledger, std::string operator_key);

  // Who an Authorization header value is. UNAUTHENTICATED when it is nobody.
  absl::StatusOr<Viewer> Authenticate(const std::string& authorization) const;
  // A viewer as one string and back (the front door carries it from the head to the handler).
  static std::string Encode(const Viewer& viewer);
  static Viewer Decode(const std::string& encoded);

  nlohmann::json WhoAmI(const Viewer& viewer) const;
  // Every device with its state, load, models and last heartbeat.
  nlohmann::json Mesh(const Viewer& viewer) const;
  // The recent requests the viewer may see, newest first (summaries).
  absl::StatusOr<nlohmann::json> Requests(const Viewer& viewer) const;
  // One request whole: plan, attempts, compete, contributions, sub-task events.
  absl::StatusOr<nlohmann::json> Request(const Viewer& viewer, const std::string& id) const;
  // What the analyzer, decomposer and selector would do with `body`'s {"prompt": ...,
  // "mode": "auto"|"compiled"|"compete"} (nothing runs).
  absl::StatusOr<nlohmann::json> Explain(const Viewer& viewer, const std::string& body) const;
  // Operator: payouts per provider and the accounts; client: its balance and available
  // credit; provider: its earnings.
  absl::StatusOr<nlohmann::json> Money(const Viewer& viewer) const;
  // Payouts as CSV (operator: every provider; provider: itself).
  absl::StatusOr<std::string> PayoutsCsv(const Viewer& viewer) const;
  // Operator only: the ledger's verify (recomputes the hash chain: on demand, never polled).
  absl::StatusOr<nlohmann::json> Verify(const Viewer& viewer) const;
  // The family x category affinities with what the mesh learnt.
  nlohmann::json Affinities(const Viewer& viewer) const;
  // The affinities as JSON rows (model, family, category, prior, good, bad, blended); also
  // GET /loom/v1/affinities.
  static nlohmann::json AffinityRows(const v1::ListAffinitiesResponse& affinities);

 private:
  DeviceRegistry* const registry_;
  RequestRunner* const runner_;
  const RequestLog* const recent_;
  const Authenticator* const auth_;
  LedgerAdmin* const ledger_;
  const std::string operator_key_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_CONSOLE_API_H_
