#include "ledger/sqlite_ledger.h"

#include <algorithm>
#include <utility>

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "ledger/ledger_rules.h"

namespace loom {

SqliteLedger::SqliteLedger(sqlite3* db, const LedgerOptions& options)
    : options_(options),
      clock_(options.clock ? options.clock : Clock::Real()),
      committer_({.max_batch = options.max_batch, .wait = options.group_commit_wait},
                 [this](absl::Span<Committer::Op* const> batch) { return CommitBatch(batch); }) {
  absl::MutexLock lock(&mu_);
  conn_.db = db;
}

absl::StatusOr<std::unique_ptr<SqliteLedger>> SqliteLedger::Open(const LedgerOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("ledger: empty database path");
  if (options.synchronous != "FULL" && options.synchronous != "NORMAL" &&
      options.synchronous != "OFF") {
    return absl::InvalidArgumentError(absl::StrCat(
        "ledger: synchronous must be FULL, NORMAL or OFF, not '", options.synchronous, "'"));
  }
  if (options.fee_bps < 0 || options.fee_bps > 10000) {
    return absl::InvalidArgumentError("ledger: fee_bps must be 0-10000");
  }
  if (options.max_batch < 1) return absl::InvalidArgumentError("ledger: max_batch must be >= 1");
  sqlite3* db = nullptr;
  int flags = options.read_only ? SQLITE_OPEN_READONLY
                                : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;  // mu_ serialises every use of the connection
  const int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = sqlite::ToStatus(db, rc, absl::StrCat("open ", options.path));
    sqlite3_close(db);
    return status;
  }
  auto ledger = std::unique_ptr<SqliteLedger>(new SqliteLedger(db, options));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  absl::MutexLock lock(&ledger->mu_);
  LOOM_RETURN_IF_ERROR(sqlite::Exec(db, "PRAGMA foreign_keys=ON"));
  LOOM_ASSIGN_OR_RETURN(const int current, sqlite::UserVersion(db));
  if (options.read_only) {
    if (current == 0) {
      return absl::NotFoundError(absl::StrCat(options.path, ": not a Loom ledger (no schema)"));
    }
    if (current != kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          options.path, ": schema version ", current, ", this build reads ", kSchemaVersion,
          " (open it once read-write to migrate)"));
    }
    return ledger;
  }
  LOOM_RETURN_IF_ERROR(sqlite::Exec(db, "PRAGMA journal_mode=WAL"));
  // Savepoints (one per write in a group commit) keep their statement journals in memory
  // rather than in temp files: durability comes from the WAL, not from these.
  LOOM_RETURN_IF_ERROR(sqlite::Exec(db, "PRAGMA temp_store=MEMORY"));
  LOOM_RETURN_IF_ERROR(sqlite::Exec(db, absl::StrCat("PRAGMA synchronous=", options.synchronous)));
  LOOM_RETURN_IF_ERROR(sqlite::Migrate(db));
  return ledger;
}

SqliteLedger::~SqliteLedger() {
  // Writes already queued are committed by their callers; new ones are refused.
  committer_.Stop();
  absl::MutexLock lock(&mu_);
  conn_.cache.Clear();  // finalize before closing
  sqlite3_close(conn_.db);
}

absl::StatusOr<int> SqliteLedger::SchemaVersion() {
  absl::MutexLock lock(&mu_);
  return sqlite::UserVersion(conn_.db);
}

int64_t SqliteLedger::FeeFor(int64_t credits_micro) const {
  return ledger_rules::Fee(options_.fee_bps, credits_micro);
}

absl::Status SqliteLedger::Write(absl::FunctionRef<absl::Status(SqliteTxn&)> fn, bool durable) {
  if (options_.read_only) return absl::FailedPreconditionError("ledger opened read-only");
  return committer_.Write(fn, durable);
}

std::vector<std::string> SqliteLedger::RetryReleases() {
  std::vector<std::string> retried;
  if (unreleased_.empty() || !Prepared("SAVEPOINT op").Run().ok()) return retried;
  bool all = true;
  for (const std::string& request_id : unreleased_) {
    all = all &&
          Prepared("DELETE FROM reservations WHERE request_id = ?1").Bind(1, request_id).Run().ok();
  }
  if (all) {
    retried.assign(unreleased_.begin(), unreleased_.end());
  } else {
    (void)Prepared("ROLLBACK TO op").Run();
  }
  (void)Prepared("RELEASE op").Run();
  return retried;
}

absl::Status SqliteLedger::CommitBatch(absl::Span<Committer::Op* const> batch) {
  absl::MutexLock lock(&mu_);
  absl::Status commit;
  const bool durable = std::any_of(batch.begin(), batch.end(),
                                   [](const Committer::Op* op) { return op->durable; });
  // Only FULL is relaxed: a batch of reservations need not wait for the disk.
  const bool flush = durable || options_.synchronous != "FULL";
  if (flush != flushing_) {
    commit = Prepared(flush ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL").Run();
    if (commit.ok()) flushing_ = flush;
  }
  if (commit.ok()) commit = Prepared("BEGIN IMMEDIATE").Run();
  if (!commit.ok()) return commit;
  // Releases that failed before go first, so no reservation this batch makes for the same id
  // can be deleted by them; they are forgotten only once their commit holds.
  const std::vector<std::string> retried = RetryReleases();
  std::vector<std::string> created;  // accounts the batch's writes created
  for (Committer::Op* op : batch) {
    // A savepoint per write: one failing write does not undo the others.
    SqliteTxn txn(conn_, clock_);
    op->status = Prepared("SAVEPOINT op").Run();
    if (op->status.ok()) op->status = op->fn(txn);
    if (op->status.ok()) {
      op->status = Prepared("RELEASE op").Run();
      created.insert(created.end(), txn.created_accounts().begin(), txn.created_accounts().end());
    } else {
      (void)Prepared("ROLLBACK TO op").Run();
      (void)Prepared("RELEASE op").Run();
    }
  }
  commit = Prepared("COMMIT").Run();
  if (commit.ok()) {
    conn_.known_accounts.insert(created.begin(), created.end());
    for (const std::string& request_id : retried) unreleased_.erase(request_id);
  } else {
    (void)sqlite::Exec(conn_.db, "ROLLBACK");
  }
  return commit;
}

}  // namespace loom
