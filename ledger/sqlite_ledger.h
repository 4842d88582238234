// File: ledger/sqlite_ledger.h
// The SQLite ledger: double-entry accounts, exactly-once settlement, contribution records.
//
//   LOOM_ASSIGN_OR_RETURN(std::unique_ptr<SqliteLedger> ledger,
//                         SqliteLedger::Open({.path = "loom.db"}));
//   LOOM_ASSIGN_OR_RETURN(Settlement s, ledger->Settle({request_id, "client:alice", records}));
//
// Schema (versioned by PRAGMA user_version, migrated forward on Open):
//   accounts(id "kind:name", kind)        kind in client, provider, mint, payout, fee
//   transactions(id, kind, reference)     reference is unique ("settle:<request id>")
//   entries(txn_id, account_id, amount)   every transaction's entries sum to zero
//   contributions(request, sub-task, attempt) -> device, provider, model, role, tokens, credits
//
// Thread-safe: one connection behind a mutex. Durability: WAL, foreign keys on,
// synchronous=FULL unless Options says otherwise, busy timeout for other processes.
#ifndef LOOM_LEDGER_SQLITE_LEDGER_H_
#define LOOM_LEDGER_SQLITE_LEDGER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "ledger/ledger_store.h"

struct sqlite3;

namespace loom {

struct LedgerOptions {
  std::string path;                    // file path or ":memory:"
  std::string synchronous = "FULL";    // FULL, NORMAL or OFF
  int busy_timeout_ms = 5000;          // wait this long for another process's write lock
  bool read_only = false;              // open without creating or migrating
  Clock* clock = nullptr;              // timestamps; nullptr = Clock::Real()
};

class SqliteLedger : public LedgerStore {
 public:
  // The schema version Open migrates to.
  static constexpr int kSchemaVersion = 1;

  // Opens (creating and migrating unless read_only) the database. INVALID_ARGUMENT for bad
  // options, FAILED_PRECONDITION for a database newer than this build, UNAVAILABLE when the
  // file cannot be opened.
  static absl::StatusOr<std::unique_ptr<SqliteLedger>> Open(const LedgerOptions& options);
  ~SqliteLedger() override;

  absl::StatusOr<Settlement> Settle(const SettlementRequest& request) override;
  absl::StatusOr<std::vector<v1::ContributionRecord>> ListRecords(
      const RecordFilter& filter) override;

  // The balance of an account in micro-credits (0 for an unknown account).
  absl::StatusOr<int64_t> Balance(const std::string& account_id);
  absl::StatusOr<int> SchemaVersion();

 private:
  SqliteLedger(sqlite3* db, Clock* clock) : db_(db), clock_(clock) {}

  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Settlement> SettleLocked(const SettlementRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  Clock* const clock_;
};

}  // namespace loom

#endif  // LOOM_LEDGER_SQLITE_LEDGER_H_
