// File: ledger/postgres_keys.cc
// The PostgreSQL ledger's API keys, kept as SHA-256 hashes of their secrets.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/ledger_rules.h"
#include "ledger/postgres_conn.h"
#include "ledger/pricing.h"

namespace loom {

using pg::EnsureAccount;
using pg::Result;

// ---- Keys ----

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> PostgresLedger::CreateKey(
    const std::string& client_name) {
  LOOM_RETURN_IF_ERROR(ValidClientName(client_name));
  return CreateKeyFor(ClientAccount(client_name));
}

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> PostgresLedger::CreateProviderKey(
    const std::string& provider_id) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckProviderId(provider_id));
  return CreateKeyFor(ProviderAccount(provider_id));
}

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> PostgresLedger::CreateKeyFor(
    const std::string& account) {
  const std::string id = "key_" + RandomHex(6);
  const std::string secret = "loom_" + RandomHex(24);
  if (id.size() < 5 || secret.size() < 6) {
    return absl::InternalError("cannot draw random bytes for a key (OpenSSL RAND_bytes failed)");
  }
  ApiKeyInfo info{id, account, absl::ToUnixMillis(clock_->Now()), 0};
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    LOOM_RETURN_IF_ERROR(EnsureAccount(c, account, info.created_ms));
    return c.Exec("INSERT INTO api_keys(id, client_account, secret_sha256, created_at_ms) "
                  "VALUES($1, $2, $3, $4)",
                  {id, account, Sha256Hex(secret), info.created_ms})
        .status();
  }));
  return std::make_pair(info, secret);
}

absl::StatusOr<std::vector<ApiKeyInfo>> PostgresLedger::ListKeys() {
  std::vector<ApiKeyInfo> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result q, c.Exec("SELECT id, client_account, created_at_ms, revoked_at_ms "
                                           "FROM api_keys ORDER BY created_at_ms, id"));
    for (int i = 0; i < q.rows(); ++i) out.push_back({q.Text(i, 0), q.Text(i, 1), q.Int(i, 2), q.Int(i, 3)});
    return absl::OkStatus();
  }));
  return out;
}

absl::Status PostgresLedger::RevokeKey(const std::string& key_id) {
  return WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result r, c.Exec("UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 "
                                           "AND revoked_at_ms = 0",
                                           {absl::ToUnixMillis(clock_->Now()), key_id}));
    if (r.affected() == 0) return absl::NotFoundError(absl::StrCat("no valid key with id '", key_id, "'"));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> PostgresLedger::Authenticate(const std::string& api_key) {
  if (api_key.empty() || api_key.size() > 256) {
    return absl::UnauthenticatedError("missing or malformed API key");
  }
  absl::StatusOr<std::string> account = absl::UnauthenticatedError("unknown API key");
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result q, c.Exec("SELECT client_account, revoked_at_ms FROM api_keys "
                                           "WHERE secret_sha256 = $1",
                                           {Sha256Hex(api_key)}));
    if (q.rows() == 0) return absl::OkStatus();
    if (q.Int(0, 1) != 0) {
      account = absl::UnauthenticatedError("this API key was revoked");
    } else {
      account = q.Text(0, 0);
    }
    return absl::OkStatus();
  }));
  return account;
}

}  // namespace loom
