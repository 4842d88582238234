// File: ledger/postgres_ledger.h
// The credit ledger on PostgreSQL, for several coordinators sharing one set of books (DESIGN.md,
// "Ledger"; issue 19). The same guarantees as SqliteLedger, held by PostgreSQL's transactions
// and row locks instead of one writer:
//  - Double entry: every transaction's entries sum to zero, written in one SQL transaction
//    with the balances they move.
//  - Exactly-once settlement by request id: transactions.reference is UNIQUE
//    ('settle:<request id>'); a second settlement of the id, from this coordinator or another,
//    returns the first (already_settled) or is refused if its records differ.
//  - No overdraw, whatever runs concurrently on however many coordinators: Reserve and Settle
//    lock the client's balance row (SELECT ... FOR UPDATE) before reading its available
//    credits, so one client's money operations are serialised and nobody else's are.
//  - Reservations name their holder (the coordinator's instance id): ReleaseOrphans drops a
//    crashed instance's own at its restart; the others expire at their deadline.
// Hot rows: the fee account keeps no balance row (its balance is the sum of its entries: every
// settlement would otherwise wait on one row); the other system accounts (mint, payout) move
// only on grants and payouts.
// Tamper evidence without one hot row: there is no single chain. Each coordinator instance
// appends to `chain_shards` chains of its own ("<holder>/<k>", k from the reference's hash);
// a transaction stores its chain, its sequence number in it, the previous hash and its hash
// (SHA-256 of chain, sequence and TxnCanonical version 2). Appending locks only that chain's
// head row, as the last lock its SQL transaction takes (so it is never part of a lock cycle),
// and concurrent settlements of one coordinator spread over its shards. Verify walks every
// chain in sequence order, recomputes each hash and link, checks that each transaction's
// entries sum to zero, each balance row equals its account's entries, and each settlement's
// records match its digest and amount; a deleted row breaks a link, an edited one its hash.
// Lock order (no deadlocks by design; a deadlock or serialisation failure reported by the
// server is retried): the account paying first (the client's balance row on reservation and
// settlement, the mint's on a grant, the provider's account row on a payout), then the other
// balance rows in account order, then the chain head, last. Providers and the fee keep no
// balance row (see above), so a settlement locks one balance row and one chain head.
// Round trips per settlement: BEGIN, one read under the client's lock (balance, holds, an
// earlier settlement), the chain head with the new id, one pipeline of every write, COMMIT.
//
// Connections: a pool of `connections`, each used by one call at a time; a call waits for a
// free one. A broken connection is reset before its next use.
//
// Thread-safe; any number of processes may share the database.
#ifndef LOOM_LEDGER_POSTGRES_LEDGER_H_
#define LOOM_LEDGER_POSTGRES_LEDGER_H_

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "ledger/ledger_admin.h"

struct pg_conn;

namespace loom {

struct PostgresLedgerOptions {
  std::string conninfo;          // a libpq connection string or postgresql:// URI
  std::string password;          // added to the conninfo's (empty: libpq's own sources)
  int connections = 4;           // the pool
  int fee_bps = 0;               // coordinator fee on settlements, basis points (0-10000)
  std::string holder = "coordinator";  // this instance's reservations and chains
  int chain_shards = 32;         // chains of this holder (1-64)
  absl::Duration answer_retention = absl::Hours(24);
  bool read_only = false;        // no migration
  Clock* clock = nullptr;        // timestamps; nullptr = Clock::Real()
};

class PostgresLedger : public LedgerAdmin {
 public:
  static constexpr int kSchemaVersion = 2;

  // Connects and (unless read_only) migrates the schema forward, under an advisory lock so
  // that coordinators starting together migrate once. UNAVAILABLE when the server cannot be
  // reached, FAILED_PRECONDITION for a schema newer than this build.
  static absl::StatusOr<std::unique_ptr<PostgresLedger>> Open(const PostgresLedgerOptions& options);
  ~PostgresLedger() override;

  // LedgerStore.
  absl::Status Reserve(const std::string& request_id, const std::string& account,
                       int64_t amount_micro, absl::Duration ttl) override;
  absl::Status Release(const std::string& request_id) override;
  absl::StatusOr<int64_t> Available(const std::string& account) override;
  int64_t FeeFor(int64_t credits_micro) const override;
  absl::StatusOr<Settlement> Settle(const SettlementRequest& request) override;
  absl::StatusOr<std::vector<PayoutRow>> Payouts(const PayoutFilter& filter) override;
  absl::StatusOr<StoredAnswer> Answer(const std::string& request_id) override;
  absl::StatusOr<std::vector<v1::ContributionRecord>> ListRecords(
      const RecordFilter& filter) override;
  absl::StatusOr<std::string> Authenticate(const std::string& api_key) override;
  absl::StatusOr<std::vector<OutcomeDelta>> RecordFeedback(const FeedbackVerdict& verdict) override;
  absl::Status AddOutcomes(const std::vector<OutcomeDelta>& deltas) override;
  absl::StatusOr<std::vector<OutcomeDelta>> Outcomes() override;

  // LedgerAdmin.
  absl::StatusOr<std::string> Grant(const std::string& account, int64_t amount_micro,
                                    const std::string& reference) override;
  absl::StatusOr<std::string> Payout(const std::string& provider_id, int64_t amount_micro,
                                     const std::string& reference) override;
  absl::StatusOr<int64_t> Balance(const std::string& account_id) override;
  absl::StatusOr<std::vector<AccountInfo>> Accounts() override;
  absl::StatusOr<std::vector<TransactionInfo>> RecentTransactions(int limit) override;
  absl::StatusOr<VerifyReport> Verify() override;
  absl::StatusOr<int64_t> ReleaseOrphans() override;
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateKey(const std::string& client_name) override;
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateProviderKey(
      const std::string& provider_id) override;
  absl::StatusOr<std::vector<ApiKeyInfo>> ListKeys() override;
  absl::Status RevokeKey(const std::string& key_id) override;
  absl::StatusOr<int> SchemaVersion() override;
  // Imported transactions keep their ids and form the chain "migrated/0", in id order.
  absl::Status Import(const LedgerCopy& copy) override;

  class Conn;     // statements on one pooled connection (postgres_ledger.cc)
  struct Session;  // one pooled connection and the statements prepared on it

 private:
  PostgresLedger(const PostgresLedgerOptions& options, std::vector<pg_conn*> pool);

  // Runs `fn` on a pooled connection (no transaction).
  absl::Status WithConn(absl::FunctionRef<absl::Status(Conn&)> fn);
  // Runs `fn` in a transaction (READ COMMITTED with explicit row locks), committing when it
  // returns OK and rolling back otherwise; a deadlock, serialisation failure or a unique
  // violation (another coordinator wrote the same reference first) or a prepared statement the
  // server no longer has runs it again, up to 4 times in all.
  absl::Status Transact(absl::FunctionRef<absl::Status(Conn&)> fn);
  absl::Status Migrate(Conn& conn);
  absl::StatusOr<std::string> Transfer(const std::string& kind, const std::string& from,
                                       const std::string& to, int64_t amount_micro,
                                       const std::string& reference);
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateKeyFor(const std::string& account);

  // Accounts known to exist (committed; accounts are never deleted): a settlement need not
  // insert them again.
  bool Known(const std::string& account) ABSL_LOCKS_EXCLUDED(known_mu_);
  void Remember(const std::vector<std::string>& accounts) ABSL_LOCKS_EXCLUDED(known_mu_);
  // Deletes answers past retention, at most once a minute (outside any settlement).
  void PruneAnswers();

  const PostgresLedgerOptions options_;
  Clock* const clock_;
  absl::Mutex known_mu_;
  std::set<std::string> known_ ABSL_GUARDED_BY(known_mu_);
  std::atomic<int64_t> last_prune_ms_{0};  // answers past retention deleted
  absl::Mutex mu_;
  std::vector<Session*> idle_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Session>> all_;  // constant after construction
};

}  // namespace loom

#endif  // LOOM_LEDGER_POSTGRES_LEDGER_H_
