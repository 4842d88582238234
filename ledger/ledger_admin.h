// File: ledger/ledger_admin.h
// The operator's side of a ledger, beside the coordinator's (LedgerStore): grants, payouts,
// balances, the audit, API keys. loom-ledger and the coordinator open an engine through this
// seam (ledger_open.h: SQLite or PostgreSQL) and use nothing engine-specific.
//
// Ownership and thread safety as LedgerStore. Every method returns a Status.
#ifndef LOOM_LEDGER_LEDGER_ADMIN_H_
#define LOOM_LEDGER_LEDGER_ADMIN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ledger/ledger_store.h"

namespace loom {

struct AccountInfo {
  std::string id;
  std::string kind;
  int64_t balance_micro = 0;
  int64_t reserved_micro = 0;   // live reservations
};

struct ApiKeyInfo {
  std::string id;              // "key_..." (public; used to list and revoke)
  std::string client_account;  // "client:NAME"
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;      // 0 while valid
};

// One transaction as a listing shows it (its entries and hash are verify's business).
struct TransactionInfo {
  int64_t id = 0;
  std::string kind;       // settle, grant, payout
  std::string reference;  // settle:REQUEST, grant:REF, payout:REF
  int64_t amount_micro = 0;
  int64_t created_ms = 0;
};

struct VerifyReport {
  bool ok = true;
  int64_t transactions = 0;
  int64_t first_bad_transaction = 0;  // 0 when ok
  std::string problem;
};

// Everything a ledger holds but its hash chain (which each engine builds its own way), for
// copying one ledger into another (loom-ledger migrate). Live reservations are not copied:
// they belong to the running coordinators of the source.
struct LedgerCopy {
  struct Account {
    std::string id, kind;
    int64_t created_ms = 0;
  };
  struct Transaction {
    int64_t id = 0;
    std::string kind, reference;
    int64_t amount_micro = 0, created_ms = 0;
    std::string records_digest;
    std::vector<std::pair<std::string, int64_t>> entries;
  };
  struct Answer {
    std::string request_id, account;
    int64_t txn_id = 0;
    std::string response;
    int64_t created_ms = 0;
  };
  struct Key {
    std::string id, account, secret_sha256;
    int64_t created_ms = 0, revoked_ms = 0;
  };
  struct Verdict {
    std::string request_id, account, rating, sub_task_id;
    int64_t created_ms = 0;
  };
  std::vector<Account> accounts;
  std::vector<Transaction> transactions;       // in id order
  std::vector<v1::ContributionRecord> records;  // each with its settlement's reference
  std::vector<Answer> answers;
  std::vector<Key> keys;
  std::vector<Verdict> verdicts;
  std::vector<OutcomeDelta> outcomes;
};

// "provider:bob" -> "provider" (the kind of an account id).
std::string AccountKind(const std::string& account_id);

class LedgerAdmin : public LedgerStore {
 public:
  // No balance (the mint's included) goes past this either way: a grant or settlement that
  // would is refused (OUT_OF_RANGE), so sums of balances never overflow int64.
  static constexpr int64_t kMaxBalanceMicro = INT64_MAX / 4;

  // Top-up from the mint. Idempotent by reference (same account and amount); a reference
  // reused for anything else is refused.
  virtual absl::StatusOr<std::string> Grant(const std::string& account, int64_t amount_micro,
                                            const std::string& reference) = 0;
  // Cash-out of a provider's earnings to the payout account; refused beyond its balance.
  virtual absl::StatusOr<std::string> Payout(const std::string& provider_id, int64_t amount_micro,
                                             const std::string& reference) = 0;
  virtual absl::StatusOr<int64_t> Balance(const std::string& account_id) = 0;
  virtual absl::StatusOr<std::vector<AccountInfo>> Accounts() = 0;
  // The newest `limit` transactions (1-1000), newest first.
  virtual absl::StatusOr<std::vector<TransactionInfo>> RecentTransactions(int limit) = 0;
  // Recomputes the hash chain(s), entry sums, balances and settlement records.
  virtual absl::StatusOr<VerifyReport> Verify() = 0;
  // Releases every reservation made by this ledger's holder: called once at start, before any
  // request (they are a crashed predecessor's). Returns how many.
  virtual absl::StatusOr<int64_t> ReleaseOrphans() = 0;

  // API keys: stored only as SHA-256 hashes. CreateKey returns the secret once ("loom_...").
  virtual absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateKey(
      const std::string& client_name) = 0;
  // A provider's key: it authenticates as "provider:ID" and reads that provider's earnings;
  // it cannot spend (the coordinator refuses it for requests).
  virtual absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateProviderKey(
      const std::string& provider_id) = 0;
  virtual absl::StatusOr<std::vector<ApiKeyInfo>> ListKeys() = 0;
  virtual absl::Status RevokeKey(const std::string& key_id) = 0;  // NOT_FOUND for an unknown id
  virtual absl::StatusOr<int> SchemaVersion() = 0;

  // The whole ledger, read in one consistent snapshot.
  virtual absl::StatusOr<LedgerCopy> Export() {
    return absl::UnimplementedError("this ledger cannot be exported");
  }
  // Writes `copy` into this ledger, which must hold no transactions yet (FAILED_PRECONDITION
  // otherwise), in one transaction, chaining its transactions anew in id order.
  virtual absl::Status Import(const LedgerCopy& copy) {
    return absl::UnimplementedError("this ledger cannot import");
  }
};

}  // namespace loom

#endif  // LOOM_LEDGER_LEDGER_ADMIN_H_
