// File: ledger/sqlite_ledger.h
// The credit ledger on SQLite (DESIGN.md, "Ledger").
//
//   LOOM_ASSIGN_OR_RETURN(std::unique_ptr<SqliteLedger> ledger,
//                         SqliteLedger::Open({.path = "loom.db"}));
//   ledger->Grant(ClientAccount("alice"), 5 * kMicroPerCredit, "invoice-17");
//   ledger->Reserve("req-1", ClientAccount("alice"), estimate, absl::Minutes(10));
//   ... run the request ...
//   ledger->Settle({"req-1", ClientAccount("alice"), records});   // consumes the reservation
//
// Model: accounts "kind:name" (client, provider) and the system accounts "mint", "payout",
// "fee". Every transaction is a set of entries summing to zero, written in one SQLite
// transaction together with the balances it moves (Verify checks each balance against the sum
// of its entries). Money is int64 micro-credits.
//  - Settle(request): the client pays the records' credits plus fee_bps of them to "fee";
//    each provider earns exactly its records. Exactly once per request id: settling again
//    with the same records returns the first settlement (already_settled) and writes nothing;
//    different records are refused (FAILED_PRECONDITION). Records are keyed by (request,
//    sub-task, attempt).
//  - Budgets: Reserve holds an estimate on the client's account, refused when the available
//    balance (balance minus live reservations) is too low; Settle consumes the reservation and
//    charges the actual cost atomically; Release drops it. No operation can take a client
//    below zero, whatever runs concurrently (one writer; checks and writes in one
//    transaction). Reservations expire at their deadline (the coordinator uses its request
//    timeout plus a minute), so a crash never holds credits forever.
//  - Grant (mint -> account) and Payout (provider -> payout) are idempotent by reference.
//  - Tamper evidence: each transaction stores SHA-256(previous hash, its fields, its entries);
//    Verify recomputes the chain and checks sums, records and PRAGMA integrity_check. Since
//    schema 7 the hashed form is length-prefixed (chain_version 2), so it is unambiguous for
//    any bytes in any field; older rows keep the '|'-joined form they were hashed with.
//  - Replays: a settlement may keep the request's answer (answers table, answer_retention),
//    which Answer() hands back to a retry of the same id.
// Durability: WAL, foreign keys, synchronous=FULL by default, busy timeout, schema versions
// in PRAGMA user_version migrated forward on Open. Reserve and Release are the exception:
// their commits are not flushed to disk on their own (they survive a process crash, and the
// next durable commit flushes them); losing one with the machine loses only a hold on credits
// for a request that died with it, so a request pays for at most one disk flush, its
// settlement. Writes are group-committed without a writer thread: a caller whose write nobody
// is committing commits every queued write in one SQLite transaction (a savepoint each, so one
// failing write does not undo the others) and one disk flush; callers that arrive meanwhile
// queue and are committed together next. A lone caller commits at once, on its own thread.
//
// Thread-safe; several processes may share the file.
//
// Where things are: the connection's statements (sqlite_statement.h), schema and migrations
// (sqlite_schema.h), group commit (group_commit.h), one write's transaction (sqlite_txn.h);
// opening and committing here (sqlite_ledger.cc), the money writes (sqlite_money.cc), reads
// (sqlite_reads.cc), the audit (sqlite_audit.cc), API keys (sqlite_keys.cc).
#ifndef LOOM_LEDGER_SQLITE_LEDGER_H_
#define LOOM_LEDGER_SQLITE_LEDGER_H_

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "ledger/group_commit.h"
#include "ledger/ledger_admin.h"
#include "ledger/sqlite_schema.h"
#include "ledger/sqlite_statement.h"
#include "ledger/sqlite_txn.h"

struct sqlite3;

namespace loom {

struct LedgerOptions {
  std::string path;                    // file path or ":memory:"
  std::string synchronous = "FULL";    // FULL, NORMAL or OFF
  int busy_timeout_ms = 10000;         // wait this long for another process's write lock
  bool read_only = false;              // open without creating or migrating
  int fee_bps = 0;                     // coordinator fee on settlements, basis points (0-10000)
  int max_batch = 256;                 // writes per group commit
  // Callers released by the last group commit are likely to write again: while fewer writes
  // are queued than those callers plus the writes that queued up during that commit, wait up
  // to this long for them, so busy callers share disk flushes instead of alternating between
  // two half-full ones. A lone caller never waits. 0: never wait.
  absl::Duration group_commit_wait = absl::Microseconds(200);
  Clock* clock = nullptr;              // timestamps; nullptr = Clock::Real()
  // Who makes this process's reservations (the coordinator's --instance_id), so that a
  // restarted coordinator can release what its crashed predecessor held (ReleaseOrphans),
  // and with several coordinators on one ledger only its own.
  std::string holder = "coordinator";
  // How long the answer a settlement keeps (SettlementRequest::answer) is handed back to
  // replays of its request id; older answers are deleted as settlements go by.
  absl::Duration answer_retention = absl::Hours(24);
};

class SqliteLedger : public LedgerAdmin {
 public:
  static constexpr int kSchemaVersion = sqlite::kSchemaVersion;

  // Opens (creating and migrating unless read_only) the database. INVALID_ARGUMENT for bad
  // options, FAILED_PRECONDITION for a database newer than this build, UNAVAILABLE when the
  // file cannot be opened.
  static absl::StatusOr<std::unique_ptr<SqliteLedger>> Open(const LedgerOptions& options);
  ~SqliteLedger() override;

  absl::StatusOr<Settlement> Settle(const SettlementRequest& request) override;
  absl::Status Reserve(const std::string& request_id, const std::string& account,
                       int64_t amount_micro, absl::Duration ttl) override;
  int64_t FeeFor(int64_t credits_micro) const override;
  // A release that cannot be written (a full disk, an I/O error) is kept and written first in
  // the ledger's next write, so the hold does not outlast the fault by its whole ttl.
  absl::Status Release(const std::string& request_id) override;
  absl::StatusOr<StoredAnswer> Answer(const std::string& request_id) override;
  // Releases every reservation made by this ledger's holder: called once at start, before any
  // request, they are a crashed predecessor's (otherwise they would hold the clients' credits
  // until they expire). Returns how many.
  absl::StatusOr<int64_t> ReleaseOrphans() override;
  absl::StatusOr<std::vector<v1::ContributionRecord>> ListRecords(
      const RecordFilter& filter) override;
  // Feedback and outcomes (ledger_store.h). A verdict is a durable write; outcomes from the
  // pipeline are not flushed on their own (statistics: the next durable commit flushes them).
  absl::StatusOr<std::vector<OutcomeDelta>> RecordFeedback(const FeedbackVerdict& verdict) override;
  absl::Status AddOutcomes(const std::vector<OutcomeDelta>& deltas) override;
  absl::StatusOr<std::vector<OutcomeDelta>> Outcomes() override;

  // Top-up from the mint. Idempotent by reference (same account and amount); a reference
  // reused for anything else is refused.
  absl::StatusOr<std::string> Grant(const std::string& account, int64_t amount_micro,
                                    const std::string& reference) override;
  // Cash-out of a provider's earnings to the payout account; refused beyond its balance.
  absl::StatusOr<std::string> Payout(const std::string& provider_id, int64_t amount_micro,
                                     const std::string& reference) override;

  absl::StatusOr<int64_t> Balance(const std::string& account_id) override;
  // Balance minus live reservations.
  absl::StatusOr<int64_t> Available(const std::string& account_id) override;
  absl::StatusOr<std::vector<AccountInfo>> Accounts() override;
  absl::StatusOr<std::vector<TransactionInfo>> RecentTransactions(int limit) override;
  absl::StatusOr<std::vector<PayoutRow>> Payouts(const PayoutFilter& filter) override;
  absl::StatusOr<VerifyReport> Verify() override;

  // API keys: stored only as SHA-256 hashes. CreateKey returns the secret once ("loom_...").
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateKey(const std::string& client_name) override;
  // A provider's key: it authenticates as "provider:ID" and reads that provider's earnings;
  // it cannot spend (the coordinator refuses it for requests).
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateProviderKey(const std::string& provider_id) override;
  absl::StatusOr<std::vector<ApiKeyInfo>> ListKeys() override;
  absl::Status RevokeKey(const std::string& key_id) override;  // NOT_FOUND for an unknown id
  absl::StatusOr<std::string> Authenticate(const std::string& api_key) override;
  absl::StatusOr<int> SchemaVersion() override;
  absl::StatusOr<LedgerCopy> Export() override;

 private:
  using Committer = GroupCommitter<SqliteTxn>;
  SqliteLedger(sqlite3* db, const LedgerOptions& options);

  // Runs `fn` in the next group commit (group_commit.h) and returns its outcome. A batch of
  // writes that are all non-durable commits without a disk flush (synchronous=NORMAL in WAL
  // mode: safe from a process crash, may be lost with the machine); the next durable commit
  // flushes them too.
  absl::Status Write(absl::FunctionRef<absl::Status(SqliteTxn&)> fn, bool durable = true);
  // One SQLite transaction for `batch` (a savepoint per write): the group commit's CommitFn.
  absl::Status CommitBatch(absl::Span<Committer::Op* const> batch) ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes the reservations whose own release failed, first in a batch; returns those that
  // are gone once the batch commits.
  std::vector<std::string> RetryReleases() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A statement on the connection, for reads: kept prepared, or for this use only.
  sqlite::Statement Prepared(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return {conn_.db, sql, &conn_.cache};
  }
  sqlite::Statement PreparedOnce(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return {conn_.db, sql};
  }

  // The writes, each inside a commit (sqlite_money.cc, sqlite_keys.cc). They reach the
  // connection only through `txn`.
  absl::StatusOr<Settlement> SettleIn(SqliteTxn& txn, const SettlementRequest& request) const;
  absl::Status ReserveIn(SqliteTxn& txn, const std::string& request_id,
                         const std::string& account, int64_t amount_micro,
                         absl::Duration ttl) const;
  // Grant and Payout: validates, then one write moving `amount` from `from` to `to`.
  absl::StatusOr<std::string> Transfer(const std::string& kind, const std::string& from,
                                       const std::string& to, int64_t amount_micro,
                                       const std::string& reference);
  static absl::StatusOr<std::string> TransferIn(SqliteTxn& txn, const std::string& kind,
                                                const std::string& from, const std::string& to,
                                                int64_t amount, const std::string& reference);
  static absl::StatusOr<std::vector<OutcomeDelta>> RecordFeedbackIn(
      SqliteTxn& txn, const FeedbackVerdict& verdict);
  static absl::Status AddOutcomesIn(SqliteTxn& txn, const std::vector<OutcomeDelta>& deltas);
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateKeyFor(const std::string& account);

  // Constant after construction.
  const LedgerOptions options_;
  Clock* const clock_;

  absl::Mutex mu_;  // the connection
  SqliteConn conn_ ABSL_GUARDED_BY(mu_);
  bool flushing_ ABSL_GUARDED_BY(mu_) = true;  // the connection's synchronous is options_'s
  // Releases whose own write failed, retried at the start of every batch until one commits.
  std::set<std::string> unreleased_ ABSL_GUARDED_BY(mu_);

  Committer committer_;  // last: stopped first on destruction, before the connection closes
};

}  // namespace loom

#endif  // LOOM_LEDGER_SQLITE_LEDGER_H_
