// The SQLite ledger's API keys: stored only as SHA-256 hashes of their secrets.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_rules.h"
#include "ledger/sqlite_ledger.h"

namespace loom {

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> SqliteLedger::CreateProviderKey(
    const std::string& provider_id) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckProviderId(provider_id));
  return CreateKeyFor(ProviderAccount(provider_id));
}

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> SqliteLedger::CreateKey(
    const std::string& client_name) {
  LOOM_RETURN_IF_ERROR(ValidClientName(client_name));
  return CreateKeyFor(ClientAccount(client_name));
}

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> SqliteLedger::CreateKeyFor(
    const std::string& account) {
  const std::string id = "key_" + RandomHex(6);
  const std::string secret = "loom_" + RandomHex(24);
  if (id.size() < 5 || secret.size() < 6) {
    return absl::InternalError("cannot draw random bytes for a key (OpenSSL RAND_bytes failed)");
  }
  const ApiKeyInfo info{id, account, absl::ToUnixMillis(clock_->Now()), 0};
  LOOM_RETURN_IF_ERROR(Write([&](SqliteTxn& txn) -> absl::Status {
    LOOM_RETURN_IF_ERROR(txn.EnsureAccount(account));
    return txn.PrepareOnce("INSERT INTO api_keys(id, client_account, secret_sha256, "
                           "created_at_ms) VALUES(?1, ?2, ?3, ?4)")
        .Bind(1, id)
        .Bind(2, account)
        .Bind(3, Sha256Hex(secret))
        .Bind(4, info.created_ms)
        .Run();
  }));
  return std::make_pair(info, secret);
}

absl::StatusOr<std::vector<ApiKeyInfo>> SqliteLedger::ListKeys() {
  absl::MutexLock lock(&mu_);
  sqlite::Statement q = PreparedOnce(
      "SELECT id, client_account, created_at_ms, revoked_at_ms FROM api_keys "
      "ORDER BY created_at_ms, id");
  return sqlite::Collect<ApiKeyInfo>(q, [](const sqlite::Statement& r) {
    return ApiKeyInfo{r.Text(0), r.Text(1), r.Int(2), r.Int(3)};
  });
}

absl::Status SqliteLedger::RevokeKey(const std::string& key_id) {
  return Write([&](SqliteTxn& txn) -> absl::Status {
    LOOM_RETURN_IF_ERROR(
        txn.PrepareOnce("UPDATE api_keys SET revoked_at_ms = ?1 WHERE id = ?2 AND revoked_at_ms = 0")
            .Bind(1, txn.NowMs())
            .Bind(2, key_id)
            .Run());
    if (txn.Changes() == 0) {
      return absl::NotFoundError(absl::StrCat("no valid key with id '", key_id, "'"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> SqliteLedger::Authenticate(const std::string& api_key) {
  if (api_key.empty() || api_key.size() > 256) {
    return absl::UnauthenticatedError("missing or malformed API key");
  }
  absl::MutexLock lock(&mu_);
  sqlite::Statement q =
      Prepared("SELECT client_account, revoked_at_ms FROM api_keys WHERE secret_sha256 = ?1");
  q.Bind(1, Sha256Hex(api_key));
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return absl::UnauthenticatedError("unknown API key");
  if (q.Int(1) != 0) return absl::UnauthenticatedError("this API key was revoked");
  return q.Text(0);
}

}  // namespace loom
