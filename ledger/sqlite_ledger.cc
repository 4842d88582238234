#include "ledger/sqlite_ledger.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/ledger_rules.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

// The one converter from SQLite result codes to Status. Busy/locked map to ABORTED (retry the
// transaction); constraint failures to FAILED_PRECONDITION; the rest to INTERNAL/UNAVAILABLE.
absl::Status SqliteStatus(sqlite3* db, int rc, absl::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
  std::string message = absl::StrCat("ledger: ", what, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::AbortedError(message);
    case SQLITE_CONSTRAINT:
      return absl::FailedPreconditionError(message);
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

// Prepared statements kept for the life of the connection, by SQL text.
class StatementCache {
 public:
  ~StatementCache() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  }
  sqlite3_stmt* Get(sqlite3* db, absl::string_view sql, int* rc) {
    auto it = cache_.find(std::string(sql));
    if (it != cache_.end()) {
      *rc = SQLITE_OK;
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    *rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                             SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (*rc == SQLITE_OK) cache_.emplace(std::string(sql), stmt);
    return stmt;
  }

 private:
  std::map<std::string, sqlite3_stmt*> cache_;
};

namespace {

// A prepared statement: finalized on destruction, or reset and returned to `cache`.
class Statement {
 public:
  Statement(sqlite3* db, absl::string_view sql, StatementCache* cache = nullptr)
      : db_(db), cached_(cache != nullptr) {
    if (cache) {
      stmt_ = cache->Get(db, sql, &rc_);
    } else {
      rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
    }
  }
  ~Statement() {
    if (cached_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const { return SqliteStatus(db_, rc_, "prepare"); }
  Statement& Bind(int i, absl::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& BindDouble(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  // Steps once: true when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    LOOM_RETURN_IF_ERROR(status());
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteStatus(db_, rc, "step");
  }
  absl::Status Run() {
    auto row = Step();
    return row.status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  int columns() const { return sqlite3_column_count(stmt_); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  // Every byte of the value, NULs included (the length comes from SQLite, not strlen).
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }
  Statement& BindBlob(int i, absl::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  std::string Blob(int col) const {
    const void* b = sqlite3_column_blob(stmt_, col);
    return b ? std::string(static_cast<const char*>(b), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }

 private:
  sqlite3* db_;
  bool cached_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return SqliteStatus(nullptr, rc, message);
  }
  return absl::OkStatus();
}

// One statement with no rows, prepared once per connection.
absl::Status Run(sqlite3* db, const char* sql, StatementCache* cache) {
  Statement statement(db, sql, cache);
  return statement.Run();
}

// The columns of a contribution row, in the order RecordFromRow reads them. kRecordColumns
// are those of every schema since 1 (migrations read them); since schema 8 a row also says
// what the work was and whether it reached the answer.
constexpr char kRecordColumns[] =
    "request_id, sub_task_id, attempt, device_id, provider_id, model, role, token_count, weight, "
    "credits_micro, created_at_ms";
constexpr char kAllRecordColumns[] =
    "request_id, sub_task_id, attempt, device_id, provider_id, model, role, token_count, weight, "
    "credits_micro, created_at_ms, category, in_answer";

v1::ContributionRecord RecordFromRow(const Statement& q) {
  v1::ContributionRecord r;
  r.set_request_id(q.Text(0));
  r.set_sub_task_id(q.Text(1));
  r.set_attempt(static_cast<int32_t>(q.Int(2)));
  r.set_device_id(q.Text(3));
  r.set_provider_id(q.Text(4));
  r.set_model(q.Text(5));
  r.set_role(static_cast<v1::ContributionRole>(q.Int(6)));
  r.set_token_count(q.Int(7));
  r.set_weight(q.Double(8));
  r.set_credits_micro(q.Int(9));
  r.set_created_unix_ms(q.Int(10));
  if (q.columns() > 12) {
    const int64_t category = q.Int(11);
    if (v1::TaskCategory_IsValid(static_cast<int>(category))) {
      r.set_category(static_cast<v1::TaskCategory>(category));
    }
    r.set_in_answer(q.Int(12) != 0);
  }
  return r;
}


// Migration i takes the schema from version i to i+1. Never edit a released migration; append.
constexpr const char* kMigrations[] = {
    // 1: accounts, transactions, entries, contributions.
    R"sql(
CREATE TABLE accounts(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('client', 'provider', 'mint', 'payout', 'fee')),
  created_at_ms INTEGER NOT NULL);
CREATE TABLE transactions(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  amount_micro INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL);
CREATE TABLE entries(
  txn_id INTEGER NOT NULL REFERENCES transactions(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL,
  PRIMARY KEY (txn_id, account_id));
CREATE INDEX entries_by_account ON entries(account_id);
CREATE TABLE contributions(
  request_id TEXT NOT NULL,
  sub_task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  txn_id INTEGER NOT NULL REFERENCES transactions(id),
  device_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  model TEXT NOT NULL,
  role INTEGER NOT NULL,
  token_count INTEGER NOT NULL CHECK (token_count >= 0),
  weight REAL NOT NULL,
  credits_micro INTEGER NOT NULL CHECK (credits_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, sub_task_id, attempt));
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
)sql",
    // 2: hash chain, settlement digests, reservations, system accounts.
    R"sql(
ALTER TABLE transactions ADD COLUMN records_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE INDEX transactions_by_kind ON transactions(kind, created_at_ms);
CREATE INDEX contributions_by_txn ON contributions(txn_id);
CREATE TABLE reservations(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL);
CREATE INDEX reservations_by_account ON reservations(account_id, expires_at_ms);
INSERT INTO accounts(id, kind, created_at_ms) VALUES ('mint', 'mint', 0), ('payout', 'payout', 0),
  ('fee', 'fee', 0) ON CONFLICT(id) DO NOTHING;
)sql",
    // 3: balances kept beside the entries, in the same transactions (Verify checks them).
    R"sql(
CREATE TABLE balances(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  balance_micro INTEGER NOT NULL);
INSERT INTO balances(account_id, balance_micro)
  SELECT a.id, COALESCE((SELECT SUM(e.amount_micro) FROM entries e WHERE e.account_id = a.id), 0)
  FROM accounts a;
)sql",
    // 4: API keys, bound to client accounts, kept as hashes.
    R"sql(
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  client_account TEXT NOT NULL REFERENCES accounts(id),
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER NOT NULL DEFAULT 0);
)sql",
    // 5: fewer b-tree pages per settlement (each dirty page is a WAL write on the request's
    // path). Tables keyed by their natural key are WITHOUT ROWID (one b-tree, not a table plus
    // its key index); transactions drop AUTOINCREMENT (ids were always chosen by the ledger, and
    // its sqlite_sequence row was one more page per write); indexes no query needs on a hot or
    // per-row path are dropped: entries by account and contributions by transaction (Verify
    // sums entries in one pass and finds a settlement's records by request id), reservations
    // by account (the table holds only live reservations). New tables are built beside the old
    // ones, referencing each other, and renamed into place; renaming rewrites the references.
    R"sql(
CREATE TABLE transactions_v5(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  amount_micro INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  records_digest TEXT NOT NULL DEFAULT '',
  prev_hash TEXT NOT NULL DEFAULT '',
  hash TEXT NOT NULL DEFAULT '');
INSERT INTO transactions_v5(id, kind, reference, amount_micro, created_at_ms, records_digest,
                            prev_hash, hash)
  SELECT id, kind, reference, amount_micro, created_at_ms, records_digest, prev_hash, hash
  FROM transactions;
CREATE TABLE entries_v5(
  txn_id INTEGER NOT NULL REFERENCES transactions_v5(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL,
  PRIMARY KEY (txn_id, account_id)) WITHOUT ROWID;
INSERT INTO entries_v5(txn_id, account_id, amount_micro)
  SELECT txn_id, account_id, amount_micro FROM entries;
CREATE TABLE contributions_v5(
  request_id TEXT NOT NULL,
  sub_task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  txn_id INTEGER NOT NULL REFERENCES transactions_v5(id),
  device_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  model TEXT NOT NULL,
  role INTEGER NOT NULL,
  token_count INTEGER NOT NULL CHECK (token_count >= 0),
  weight REAL NOT NULL,
  credits_micro INTEGER NOT NULL CHECK (credits_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, sub_task_id, attempt)) WITHOUT ROWID;
INSERT INTO contributions_v5(request_id, sub_task_id, attempt, txn_id, device_id, provider_id,
                             model, role, token_count, weight, credits_micro, created_at_ms)
  SELECT request_id, sub_task_id, attempt, txn_id, device_id, provider_id, model, role,
         token_count, weight, credits_micro, created_at_ms FROM contributions;
CREATE TABLE balances_v5(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  balance_micro INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO balances_v5(account_id, balance_micro) SELECT account_id, balance_micro FROM balances;
CREATE TABLE reservations_v5(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO reservations_v5(request_id, account_id, amount_micro, created_at_ms, expires_at_ms)
  SELECT request_id, account_id, amount_micro, created_at_ms, expires_at_ms FROM reservations;
DROP TABLE contributions;
DROP TABLE entries;
DROP TABLE transactions;
DROP TABLE balances;
DROP TABLE reservations;
ALTER TABLE transactions_v5 RENAME TO transactions;
ALTER TABLE entries_v5 RENAME TO entries;
ALTER TABLE contributions_v5 RENAME TO contributions;
ALTER TABLE balances_v5 RENAME TO balances;
ALTER TABLE reservations_v5 RENAME TO reservations;
CREATE INDEX transactions_by_kind ON transactions(kind, created_at_ms);
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
)sql",
    // 6: reservations name their holder (the coordinator instance), so a restarted
    // coordinator releases its own orphans at start.
    R"sql(
ALTER TABLE reservations ADD COLUMN holder TEXT NOT NULL DEFAULT '';
)sql",
    // 7: an unambiguous (length-prefixed) hash form for new transactions, and the answers
    // settlements keep for replays of their request ids.
    R"sql(
ALTER TABLE transactions ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
CREATE TABLE answers(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  txn_id INTEGER NOT NULL REFERENCES transactions(id),
  response BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX answers_by_age ON answers(created_at_ms);
)sql",
    // 8: what each contribution's work was and whether it reached the answer, the clients'
    // verdicts on their requests, and the outcomes observed per (model, category) that move
    // the selector's affinities. Routing statistics, not money: the hash chain does not cover
    // them.
    R"sql(
ALTER TABLE contributions ADD COLUMN category INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contributions ADD COLUMN in_answer INTEGER NOT NULL DEFAULT 0;
CREATE TABLE feedback(
  request_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  rating TEXT NOT NULL CHECK (rating IN ('good', 'bad')),
  sub_task_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, account_id)) WITHOUT ROWID;
CREATE TABLE outcomes(
  model TEXT NOT NULL,
  category INTEGER NOT NULL,
  good REAL NOT NULL CHECK (good >= 0),
  bad REAL NOT NULL CHECK (bad >= 0),
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (model, category)) WITHOUT ROWID;
)sql",
};
static_assert(std::size(kMigrations) == SqliteLedger::kSchemaVersion);

Entries LoadEntries(sqlite3* db, int64_t txn_id, absl::Status* status) {
  Statement q(db, "SELECT account_id, amount_micro FROM entries WHERE txn_id = ?1");
  q.Bind(1, txn_id);
  Entries entries;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) {
      *status = row.status();
      break;
    }
    if (!*row) break;
    entries.emplace_back(q.Text(0), q.Int(1));
  }
  return entries;
}

// After migration 2: digests for settlements written by version 1, then the hash chain over
// every existing transaction.
absl::Status HashExistingTransactions(sqlite3* db) {
  {
    Statement settles(db, "SELECT id FROM transactions WHERE kind = 'settle' ORDER BY id");
    std::vector<int64_t> ids;
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, settles.Step());
      if (!row) break;
      ids.push_back(settles.Int(0));
    }
    for (int64_t id : ids) {
      Statement q(db, absl::StrCat("SELECT ", kRecordColumns,
                                   " FROM contributions WHERE txn_id = ?1"));
      q.Bind(1, id);
      std::vector<v1::ContributionRecord> records;
      while (true) {
        LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
        if (!row) break;
        records.push_back(RecordFromRow(q));
      }
      Statement u(db, "UPDATE transactions SET records_digest = ?1 WHERE id = ?2");
      LOOM_RETURN_IF_ERROR(u.Bind(1, RecordsDigest(records)).Bind(2, id).Run());
    }
  }
  Statement all(db,
                "SELECT id, kind, reference, amount_micro, created_at_ms, records_digest "
                "FROM transactions ORDER BY id");
  std::string prev;
  struct Row {
    int64_t id, amount, created;
    std::string kind, reference, digest;
  };
  std::vector<Row> rows;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, all.Step());
    if (!row) break;
    rows.push_back({all.Int(0), all.Int(3), all.Int(4), all.Text(1), all.Text(2), all.Text(5)});
  }
  for (const Row& r : rows) {
    absl::Status status;
    Entries entries = LoadEntries(db, r.id, &status);
    LOOM_RETURN_IF_ERROR(status);
    const std::string hash = Sha256Hex(
        TxnCanonical(1, prev, r.id, r.kind, r.reference, r.amount, r.created, r.digest, entries));
    Statement u(db, "UPDATE transactions SET prev_hash = ?1, hash = ?2 WHERE id = ?3");
    LOOM_RETURN_IF_ERROR(u.Bind(1, prev).Bind(2, hash).Bind(3, r.id).Run());
    prev = hash;
  }
  return absl::OkStatus();
}

}  // namespace

std::string AccountKind(const std::string& account_id) {
  const size_t colon = account_id.find(':');
  return colon == std::string::npos ? account_id : account_id.substr(0, colon);
}

SqliteLedger::SqliteLedger(sqlite3* db, const LedgerOptions& options)
    : options_(options),
      clock_(options.clock ? options.clock : Clock::Real()),
      db_(db),
      cache_(std::make_unique<StatementCache>()) {}

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
  int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteStatus(db, rc, absl::StrCat("open ", options.path));
    sqlite3_close(db);
    return status;
  }
  auto ledger = std::unique_ptr<SqliteLedger>(new SqliteLedger(db, options));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  {
    absl::MutexLock lock(&ledger->mu_);
    LOOM_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys=ON"));
    int current = 0;
    {
      // Finalized before the PRAGMAs below: a live statement is an open read transaction.
      Statement version(db, "PRAGMA user_version");
      LOOM_ASSIGN_OR_RETURN(bool row, version.Step());
      if (row) current = static_cast<int>(version.Int(0));
    }
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
    LOOM_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL"));
    // Savepoints (one per write in a group commit) keep their statement journals in memory
    // rather than in temp files: durability comes from the WAL, not from these.
    LOOM_RETURN_IF_ERROR(Exec(db, "PRAGMA temp_store=MEMORY"));
    LOOM_RETURN_IF_ERROR(
        Exec(db, absl::StrCat("PRAGMA synchronous=", options.synchronous).c_str()));
    LOOM_RETURN_IF_ERROR(ledger->Migrate());
  }
  return ledger;
}

SqliteLedger::~SqliteLedger() {
  {
    // Writes already queued are committed by their callers; new ones are refused.
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
    queue_mu_.Await(absl::Condition(
        +[](SqliteLedger* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return self->queue_.empty() && !self->leading_;
        },
        this));
  }
  absl::MutexLock lock(&mu_);
  cache_.reset();  // finalize before closing
  sqlite3_close(db_);
}

absl::Status SqliteLedger::Migrate() {
  LOOM_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  auto migrate = [&]() -> absl::Status {
    int current = 0;
    {
      // Finalized before migrating: an open statement would make DROP TABLE fail (locked).
      Statement version(db_, "PRAGMA user_version");
      LOOM_ASSIGN_OR_RETURN(bool row, version.Step());
      if (row) current = static_cast<int>(version.Int(0));
    }
    if (current > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("ledger schema version ", current, " is newer than this build (",
                       kSchemaVersion, "); upgrade Loom"));
    }
    for (int v = current; v < kSchemaVersion; ++v) {
      LOOM_RETURN_IF_ERROR(Exec(db_, kMigrations[v]));
      if (v + 1 == 2) LOOM_RETURN_IF_ERROR(HashExistingTransactions(db_));
    }
    return Exec(db_, absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
  };
  absl::Status status = migrate();
  if (!status.ok()) {
    (void)Exec(db_, "ROLLBACK");
    return status;
  }
  return Exec(db_, "COMMIT");
}

absl::StatusOr<int> SqliteLedger::SchemaVersion() {
  absl::MutexLock lock(&mu_);
  Statement version(db_, "PRAGMA user_version");
  LOOM_ASSIGN_OR_RETURN(bool row, version.Step());
  return row ? static_cast<int>(version.Int(0)) : 0;
}

// ---- Group commit ----

// Leader and followers: a caller whose write nobody is committing commits the queue itself
// (a lone caller never waits for another thread); callers arriving meanwhile queue up, and the
// leader hands the lead to the first of them, which commits them all next. Only the writes'
// own callers and the next leader are woken.
absl::Status SqliteLedger::Write(std::function<absl::Status()> fn, bool durable) {
  if (options_.read_only) return absl::FailedPreconditionError("ledger opened read-only");
  WriteOp op;
  op.fn = std::move(fn);
  op.durable = durable;
  bool leads = false;
  {
    absl::MutexLock lock(&queue_mu_);
    if (stopping_) return absl::UnavailableError("ledger is closing");
    queue_.push_back(&op);
    if (!leading_) {  // then the queue was empty: this write is its front
      leading_ = true;
      leads = true;
    }
  }
  // Woken once: either its write was committed by a leader (done), or it leads next. Each
  // caller waits on its own notification, so a leader wakes its batch's callers at once
  // rather than one after another through a shared mutex.
  if (!leads) {
    op.woken.WaitForNotification();
    if (op.done) return op.status;
  }

  std::vector<WriteOp*> batch;
  {
    absl::MutexLock lock(&queue_mu_);
    // Group commit: when the last commit released callers, or writes queued while it ran,
    // wait briefly for as many to arrive; a lone caller does not wait.
    const size_t expected = std::min(backlog_ + released_,
                                     static_cast<size_t>(std::max(1, options_.max_batch)));
    if (queue_.size() < expected && options_.group_commit_wait > absl::ZeroDuration()) {
      struct Args {
        SqliteLedger* self;
        size_t expected;
      } args{this, expected};
      queue_mu_.AwaitWithTimeout(
          absl::Condition(
              +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return a->self->queue_.size() >= a->expected;
              },
              &args),
          options_.group_commit_wait);
    }
    // The leader is the queue's front, so its own write is in the batch.
    while (!queue_.empty() && static_cast<int>(batch.size()) < options_.max_batch) {
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
  }
  const absl::Status commit = CommitBatch(batch);
  WriteOp* next = nullptr;
  {
    absl::MutexLock lock(&queue_mu_);
    released_ = batch.size();
    backlog_ = queue_.size();  // writes that queued while this batch ran
    if (queue_.empty()) {
      leading_ = false;
    } else {
      next = queue_.front();  // woken below with done unset: it leads
    }
  }
  // Each op's fields are set before its notification, which orders them for its caller.
  if (next != nullptr) next->woken.Notify();
  for (WriteOp* w : batch) {
    if (!commit.ok()) w->status = commit;  // nothing of the batch was written
    w->done = true;
    if (w != &op) w->woken.Notify();
  }
  return op.status;
}

absl::Status SqliteLedger::CommitBatch(const std::vector<WriteOp*>& batch) {
  absl::MutexLock lock(&mu_);
  absl::Status commit;
  const bool durable =
      std::any_of(batch.begin(), batch.end(), [](const WriteOp* op) { return op->durable; });
  // Only FULL is relaxed: a batch of reservations need not wait for the disk.
  const bool flush = durable || options_.synchronous != "FULL";
  if (flush != flushing_) {
    commit = Run(db_, flush ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                 cache_.get());
    if (commit.ok()) flushing_ = flush;
  }
  if (commit.ok()) commit = Run(db_, "BEGIN IMMEDIATE", cache_.get());
  if (!commit.ok()) return commit;
  // Releases that failed before go first, so no reservation this batch makes for the same id
  // can be deleted by them; they are forgotten only once their commit holds.
  std::vector<std::string> retried;
  if (!unreleased_.empty() && Run(db_, "SAVEPOINT op", cache_.get()).ok()) {
    bool all = true;
    for (const std::string& request_id : unreleased_) {
      Statement release(db_, "DELETE FROM reservations WHERE request_id = ?1", cache_.get());
      all = all && release.Bind(1, request_id).Run().ok();
    }
    if (all) {
      retried.assign(unreleased_.begin(), unreleased_.end());
    } else {
      (void)Run(db_, "ROLLBACK TO op", cache_.get());
    }
    (void)Run(db_, "RELEASE op", cache_.get());
  }
  batch_accounts_.clear();
  for (WriteOp* op : batch) {
    // A savepoint per write: one failing write does not undo the others.
    op_accounts_.clear();
    op->status = Run(db_, "SAVEPOINT op", cache_.get());
    if (op->status.ok()) op->status = op->fn();
    if (op->status.ok()) {
      op->status = Run(db_, "RELEASE op", cache_.get());
      batch_accounts_.insert(batch_accounts_.end(), op_accounts_.begin(), op_accounts_.end());
    } else {
      (void)Run(db_, "ROLLBACK TO op", cache_.get());
      (void)Run(db_, "RELEASE op", cache_.get());
    }
  }
  commit = Run(db_, "COMMIT", cache_.get());
  if (commit.ok()) {
    known_accounts_.insert(batch_accounts_.begin(), batch_accounts_.end());
    for (const std::string& request_id : retried) unreleased_.erase(request_id);
  } else {
    (void)Exec(db_, "ROLLBACK");
  }
  return commit;
}

// ---- Writes ----

absl::Status SqliteLedger::EnsureAccountLocked(const std::string& id) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckAccountId(id));
  const std::string kind = AccountKind(id);
  if (known_accounts_.count(id)) return absl::OkStatus();
  op_accounts_.push_back(id);
  Statement insert(db_,
                   "INSERT INTO accounts(id, kind, created_at_ms) VALUES(?1, ?2, ?3) "
                   "ON CONFLICT(id) DO NOTHING",
                   cache_.get());
  LOOM_RETURN_IF_ERROR(insert.Bind(1, id).Bind(2, kind).Bind(3, absl::ToUnixMillis(clock_->Now())).Run());
  Statement balance(db_,
                    "INSERT INTO balances(account_id, balance_micro) VALUES(?1, 0) "
                    "ON CONFLICT(account_id) DO NOTHING",
                    cache_.get());
  return balance.Bind(1, id).Run();
}

absl::StatusOr<int64_t> SqliteLedger::AvailableLocked(const std::string& account,
                                                      const std::string& except) {
  Statement q(db_,
              "SELECT (SELECT COALESCE(SUM(balance_micro), 0) FROM balances WHERE account_id = ?1) "
              "- (SELECT COALESCE(SUM(amount_micro), 0) FROM reservations WHERE account_id = ?1 "
              "AND expires_at_ms > ?2 AND request_id != ?3)",
              cache_.get());
  q.Bind(1, account).Bind(2, absl::ToUnixMillis(clock_->Now())).Bind(3, except);
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  return row ? q.Int(0) : 0;
}

absl::StatusOr<int64_t> SqliteLedger::AppendLocked(const std::string& kind,
                                                   const std::string& reference, int64_t amount,
                                                   const std::string& digest,
                                                   const Entries& entries) {
  int64_t sum = 0;
  for (const auto& [account, value] : entries) sum += value;
  if (sum != 0) {
    return absl::InternalError(absl::StrCat("ledger: entries of ", reference, " sum to ", sum));
  }
  // The chain's tip; the write lock is held (BEGIN IMMEDIATE), so no other process appends
  // between this read and the insert, and the new id is the next one.
  std::string prev;
  int64_t id = 1;
  {
    Statement last(db_, "SELECT id, hash FROM transactions ORDER BY id DESC LIMIT 1",
                   cache_.get());
    LOOM_ASSIGN_OR_RETURN(bool row, last.Step());
    if (row) {
      id = last.Int(0) + 1;
      prev = last.Text(1);
    }
  }
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  const std::string hash =
      Sha256Hex(TxnCanonical(kChainVersion, prev, id, kind, reference, amount, now_ms, digest,
                             entries));
  Statement txn(db_,
                "INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
                "records_digest, prev_hash, hash, chain_version) "
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                cache_.get());
  LOOM_RETURN_IF_ERROR(txn.Bind(1, id)
                           .Bind(2, kind)
                           .Bind(3, reference)
                           .Bind(4, amount)
                           .Bind(5, now_ms)
                           .Bind(6, digest)
                           .Bind(7, prev)
                           .Bind(8, hash)
                           .Bind(9, int64_t{kChainVersion})
                           .Run());
  // All entries in one statement (one prepared statement per entry count); each balance moves
  // by its primary key.
  const int n = static_cast<int>(entries.size());
  std::string insert_sql = "INSERT INTO entries(txn_id, account_id, amount_micro) VALUES";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&insert_sql, i ? "," : "", "(?1,?", 2 * i + 2, ",?", 2 * i + 3, ")");
  }
  Statement insert(db_, insert_sql, cache_.get());
  insert.Bind(1, id);
  for (int i = 0; i < n; ++i) {
    insert.Bind(2 * i + 2, entries[i].first).Bind(2 * i + 3, entries[i].second);
  }
  LOOM_RETURN_IF_ERROR(insert.Run());
  for (const auto& [account, amount] : entries) {
    // SQLite turns an integer overflow into a float: the bound is checked in the same
    // statement (a float past it compares as past it), so no balance ever wraps or rounds.
    Statement move(db_,
                   "UPDATE balances SET balance_micro = balance_micro + ?2 WHERE account_id = ?1 "
                   "AND balance_micro + ?2 BETWEEN -?3 AND ?3",
                   cache_.get());
    LOOM_RETURN_IF_ERROR(move.Bind(1, account).Bind(2, amount).Bind(3, kMaxBalanceMicro).Run());
    if (sqlite3_changes(db_) != 1) {
      Statement exists(db_, "SELECT 1 FROM balances WHERE account_id = ?1", cache_.get());
      LOOM_ASSIGN_OR_RETURN(bool found, exists.Bind(1, account).Step());
      if (found) {
        return absl::OutOfRangeError(absl::StrCat(
            "transaction ", reference, " would take ", account, "'s balance past ",
            FormatCredits(kMaxBalanceMicro), " credits, the most the ledger holds; refused"));
      }
      return absl::InternalError(absl::StrCat("ledger: transaction ", reference, " moves ",
                                              account, "'s balance, which does not exist"));
    }
  }
  return id;
}

int64_t SqliteLedger::FeeFor(int64_t credits_micro) const {
  // Split so that no product overflows: credits up to INT64_MAX / 10000 exactly, beyond in
  // whole units of 10000.
  return ledger_rules::Fee(options_.fee_bps, credits_micro);
}

absl::StatusOr<Settlement> SqliteLedger::Settle(const SettlementRequest& request) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckSettlement(request));
  absl::StatusOr<Settlement> result = absl::InternalError("not run");
  absl::Status status = Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    result = SettleLocked(request);
    return result.status();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<Settlement> SqliteLedger::SettleLocked(const SettlementRequest& request) {
  const std::string reference = absl::StrCat("settle:", request.request_id);
  const std::string digest = RecordsDigest(request.records);
  {
    Statement existing(db_,
                       "SELECT id, amount_micro, records_digest FROM transactions "
                       "WHERE reference = ?1",
                       cache_.get());
    existing.Bind(1, reference);
    LOOM_ASSIGN_OR_RETURN(bool found, existing.Step());
    if (found) {
      if (existing.Text(2) != digest) {
        return absl::FailedPreconditionError(absl::StrCat(
            "request ", request.request_id, " was already settled with different records "
            "(transaction ", existing.Int(0), ", ", existing.Int(1), " micro-credits)"));
      }
      Settlement s{absl::StrCat(existing.Int(0)), existing.Int(1), 0, true};
      return s;
    }
  }
  int64_t total = 0;
  std::map<std::string, int64_t> by_provider;
  for (const auto& r : request.records) {
    total += r.credits_micro();
    by_provider[ProviderAccount(r.provider_id())] += r.credits_micro();
  }
  const int64_t fee = FeeFor(total);
  const int64_t charge = total + fee;
  LOOM_RETURN_IF_ERROR(EnsureAccountLocked(request.client_account));
  LOOM_ASSIGN_OR_RETURN(int64_t available,
                        AvailableLocked(request.client_account, request.request_id));
  if (available < charge) {
    return ledger_rules::InsufficientCredits(absl::StrCat(
        "insufficient credits: ", request.client_account, " has ", FormatCredits(available),
        " available and request ", request.request_id, " costs ", FormatCredits(charge)));
  }
  Entries entries;
  entries.emplace_back(request.client_account, -charge);
  for (const auto& [account, amount] : by_provider) {
    LOOM_RETURN_IF_ERROR(EnsureAccountLocked(account));
    entries.emplace_back(account, amount);
  }
  if (fee > 0) entries.emplace_back("fee", fee);
  // A provider that is also the client (one person both asking and serving) nets out.
  std::map<std::string, int64_t> netted;
  for (const auto& [account, amount] : entries) netted[account] += amount;
  entries.assign(netted.begin(), netted.end());
  LOOM_ASSIGN_OR_RETURN(int64_t txn_id, AppendLocked("settle", reference, charge, digest, entries));

  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  // One statement for all the records (?1 request, ?2 transaction, ?3 time, 11 per record).
  constexpr int kPerRecord = 11;
  std::string rows_sql =
      "INSERT INTO contributions(request_id, txn_id, created_at_ms, sub_task_id, attempt, "
      "device_id, provider_id, model, role, token_count, weight, credits_micro, category, "
      "in_answer) VALUES";
  for (size_t i = 0; i < request.records.size(); ++i) {
    const int b = 4 + kPerRecord * static_cast<int>(i);
    absl::StrAppend(&rows_sql, i ? "," : "", "(?1,?2,?3");
    for (int k = 0; k < kPerRecord; ++k) absl::StrAppend(&rows_sql, ",?", b + k);
    absl::StrAppend(&rows_sql, ")");
  }
  if (!request.records.empty()) {
    Statement rows(db_, rows_sql, cache_.get());
    rows.Bind(1, request.request_id).Bind(2, txn_id).Bind(3, now_ms);
    for (size_t i = 0; i < request.records.size(); ++i) {
      const v1::ContributionRecord& r = request.records[i];
      const int b = 4 + kPerRecord * static_cast<int>(i);
      rows.Bind(b, r.sub_task_id())
          .Bind(b + 1, int64_t{r.attempt()})
          .Bind(b + 2, r.device_id())
          .Bind(b + 3, r.provider_id())
          .Bind(b + 4, r.model())
          .Bind(b + 5, int64_t{r.role()})
          .Bind(b + 6, r.token_count())
          .BindDouble(b + 7, r.weight())
          .Bind(b + 8, r.credits_micro())
          .Bind(b + 9, int64_t{r.category()})
          .Bind(b + 10, int64_t{r.in_answer()});
    }
    LOOM_RETURN_IF_ERROR(rows.Run());
  }
  Statement consume(db_, "DELETE FROM reservations WHERE request_id = ?1", cache_.get());
  LOOM_RETURN_IF_ERROR(consume.Bind(1, request.request_id).Run());
  // Answers past retention go as settlements pass, at most once a minute (the delete is an
  // index range scan).
  const int64_t retention_ms = absl::ToInt64Milliseconds(options_.answer_retention);
  if (now_ms - last_answer_sweep_ms_ >= 60'000) {
    Statement prune(db_, "DELETE FROM answers WHERE created_at_ms < ?1", cache_.get());
    LOOM_RETURN_IF_ERROR(prune.Bind(1, now_ms - retention_ms).Run());
    last_answer_sweep_ms_ = now_ms;
  }
  if (!request.answer.empty() && retention_ms > 0) {
    Statement keep(db_,
                   "INSERT OR REPLACE INTO answers(request_id, account_id, txn_id, response, "
                   "created_at_ms) VALUES(?1, ?2, ?3, ?4, ?5)",
                   cache_.get());
    LOOM_RETURN_IF_ERROR(keep.Bind(1, request.request_id)
                             .Bind(2, request.client_account)
                             .Bind(3, txn_id)
                             .BindBlob(4, request.answer)
                             .Bind(5, now_ms)
                             .Run());
  }
  return Settlement{absl::StrCat(txn_id), charge, fee, false};
}

absl::Status SqliteLedger::Reserve(const std::string& request_id, const std::string& account,
                                   int64_t amount_micro, absl::Duration ttl) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckReservation(request_id, account, amount_micro));
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    {
      Statement settled(db_, "SELECT id FROM transactions WHERE reference = ?1", cache_.get());
      settled.Bind(1, absl::StrCat("settle:", request_id));
      LOOM_ASSIGN_OR_RETURN(bool found, settled.Step());
      if (found) {
        return absl::AlreadyExistsError(absl::StrCat("request ", request_id,
                                                     " was already served and settled "
                                                     "(transaction ", settled.Int(0), ")"));
      }
    }
    // Expired reservations count for nothing (every read skips them); deleting them only keeps
    // the table small, and is a scan, so it runs at most once a second.
    if (now_ms - last_expiry_sweep_ms_ >= 1000) {
      Statement expire(db_, "DELETE FROM reservations WHERE expires_at_ms <= ?1", cache_.get());
      LOOM_RETURN_IF_ERROR(expire.Bind(1, now_ms).Run());
      last_expiry_sweep_ms_ = now_ms;
    }
    {
      Statement held(db_,
                     "SELECT account_id FROM reservations WHERE request_id = ?1 AND "
                     "expires_at_ms > ?2",
                     cache_.get());
      held.Bind(1, request_id).Bind(2, now_ms);
      LOOM_ASSIGN_OR_RETURN(bool found, held.Step());
      if (found) {
        // Running now (here or on another coordinator): the id is claimed, a duplicate waits.
        return absl::AbortedError(
            absl::StrCat("request ", request_id,
                         " is in progress; send it again once it has finished to get its answer"));
      }
    }
    LOOM_RETURN_IF_ERROR(EnsureAccountLocked(account));
    LOOM_ASSIGN_OR_RETURN(int64_t available, AvailableLocked(account, request_id));
    if (available < amount_micro) {
      return ledger_rules::InsufficientCredits(absl::StrCat(
          "insufficient credits: ", account, " has ", FormatCredits(available),
          " available and the request may cost up to ", FormatCredits(amount_micro)));
    }
    Statement insert(db_,
                     // REPLACE: an expired reservation of this request may not be swept yet.
                     "INSERT OR REPLACE INTO reservations(request_id, account_id, amount_micro, "
                     "created_at_ms, expires_at_ms, holder) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                     cache_.get());
    return insert.Bind(1, request_id)
        .Bind(2, account)
        .Bind(3, amount_micro)
        .Bind(4, now_ms)
        .Bind(5, now_ms + absl::ToInt64Milliseconds(ttl))
        .Bind(6, options_.holder)
        .Run();
  }, /*durable=*/false);
}

absl::StatusOr<StoredAnswer> SqliteLedger::Answer(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  Statement q(db_,
              "SELECT a.account_id, a.response, a.txn_id, t.amount_micro FROM answers a "
              "JOIN transactions t ON t.id = a.txn_id WHERE a.request_id = ?1 AND "
              "a.created_at_ms >= ?2",
              cache_.get());
  q.Bind(1, request_id)
      .Bind(2, absl::ToUnixMillis(clock_->Now()) -
                   absl::ToInt64Milliseconds(options_.answer_retention));
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no answer is kept for request ", request_id));
  return StoredAnswer{q.Text(0), q.Blob(1), absl::StrCat(q.Int(2)), q.Int(3)};
}

absl::Status SqliteLedger::Release(const std::string& request_id) {
  absl::Status released = Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Statement release(db_, "DELETE FROM reservations WHERE request_id = ?1", cache_.get());
    return release.Bind(1, request_id).Run();
  }, /*durable=*/false);
  if (!released.ok() && !options_.read_only) {
    absl::MutexLock lock(&mu_);
    unreleased_.insert(request_id);
  }
  return released;
}

absl::StatusOr<int64_t> SqliteLedger::ReleaseOrphans() {
  int64_t released = 0;
  LOOM_RETURN_IF_ERROR(Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Statement release(db_, "DELETE FROM reservations WHERE holder = ?1", cache_.get());
    LOOM_RETURN_IF_ERROR(release.Bind(1, options_.holder).Run());
    released = sqlite3_changes(db_);
    return absl::OkStatus();
  }, /*durable=*/true));
  return released;
}

absl::StatusOr<std::string> SqliteLedger::TransferLocked(const std::string& kind,
                                                         const std::string& from,
                                                         const std::string& to, int64_t amount,
                                                         const std::string& reference) {
  {
    Statement existing(db_,
                       "SELECT t.id FROM transactions t JOIN entries e ON e.txn_id = t.id "
                       "WHERE t.reference = ?1 AND t.kind = ?2 AND t.amount_micro = ?3 "
                       "AND e.account_id = ?4 AND e.amount_micro = ?3");
    existing.Bind(1, reference).Bind(2, kind).Bind(3, amount).Bind(4, to);
    LOOM_ASSIGN_OR_RETURN(bool found, existing.Step());
    if (found) return absl::StrCat(existing.Int(0));  // the same transfer again: idempotent
    Statement taken(db_, "SELECT id FROM transactions WHERE reference = ?1");
    taken.Bind(1, reference);
    LOOM_ASSIGN_OR_RETURN(bool used, taken.Step());
    if (used) {
      return absl::FailedPreconditionError(absl::StrCat(
          "reference '", reference, "' was already used for a different transaction (",
          taken.Int(0), ")"));
    }
  }
  LOOM_RETURN_IF_ERROR(EnsureAccountLocked(from));
  LOOM_RETURN_IF_ERROR(EnsureAccountLocked(to));
  if (kind == "payout") {
    LOOM_ASSIGN_OR_RETURN(int64_t available, AvailableLocked(from, ""));
    if (available < amount) {
      return absl::FailedPreconditionError(absl::StrCat(
          "insufficient balance: ", from, " has ", FormatCredits(available), ", payout of ",
          FormatCredits(amount), " refused"));
    }
  }
  LOOM_ASSIGN_OR_RETURN(int64_t id,
                        AppendLocked(kind, reference, amount, "", {{from, -amount}, {to, amount}}));
  return absl::StrCat(id);
}

absl::StatusOr<std::string> SqliteLedger::Transfer(const std::string& kind,
                                                   const std::string& from, const std::string& to,
                                                   int64_t amount_micro,
                                                   const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckTransfer(kind, amount_micro, reference));
  absl::StatusOr<std::string> id = absl::InternalError("not run");
  absl::Status status = Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    id = TransferLocked(kind, from, to, amount_micro, absl::StrCat(kind, ":", reference));
    return id.status();
  });
  if (!status.ok()) return status;
  return id;
}

absl::StatusOr<std::string> SqliteLedger::Grant(const std::string& account, int64_t amount_micro,
                                                const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckGrantAccount(account));
  return Transfer("grant", "mint", account, amount_micro, reference);
}

absl::StatusOr<std::string> SqliteLedger::Payout(const std::string& provider_id,
                                                 int64_t amount_micro,
                                                 const std::string& reference) {
  if (provider_id.empty()) return absl::InvalidArgumentError("payout: empty provider id");
  return Transfer("payout", ProviderAccount(provider_id), "payout", amount_micro, reference);
}

// ---- Reads ----

absl::StatusOr<std::vector<v1::ContributionRecord>> SqliteLedger::ListRecords(
    const RecordFilter& filter) {
  absl::MutexLock lock(&mu_);
  Statement query(db_, absl::StrCat("SELECT ", kAllRecordColumns,
                                    " FROM contributions WHERE (?1 = '' OR request_id = ?1) "
                                    "AND (?2 = '' OR provider_id = ?2) ORDER BY created_at_ms, "
                                    "request_id, sub_task_id, attempt LIMIT ?3"));
  query.Bind(1, filter.request_id).Bind(2, filter.provider_id).Bind(3, filter.limit);
  std::vector<v1::ContributionRecord> records;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    records.push_back(RecordFromRow(query));
  }
  return records;
}

// ---- Feedback and outcomes ----

absl::StatusOr<std::vector<OutcomeDelta>> SqliteLedger::RecordFeedback(
    const FeedbackVerdict& verdict) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckVerdict(verdict));
  absl::StatusOr<std::vector<OutcomeDelta>> result = absl::InternalError("not run");
  absl::Status status = Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    result = RecordFeedbackLocked(verdict);
    return result.status();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<OutcomeDelta>> SqliteLedger::RecordFeedbackLocked(
    const FeedbackVerdict& verdict) {
  // The request must have been settled and charged to this client. Another client's request
  // is "not found" for this one, as an unknown id is: a key does not learn which ids exist.
  {
    Statement owner(db_,
                    "SELECT 1 FROM transactions t JOIN entries e ON e.txn_id = t.id "
                    "WHERE t.reference = ?1 AND e.account_id = ?2",
                    cache_.get());
    owner.Bind(1, absl::StrCat("settle:", verdict.request_id)).Bind(2, verdict.client_account);
    LOOM_ASSIGN_OR_RETURN(bool found, owner.Step());
    if (!found) {
      return absl::NotFoundError(absl::StrCat("no settled request ", verdict.request_id,
                                              " of ", verdict.client_account));
    }
  }
  {
    Statement earlier(db_,
                      "SELECT rating FROM feedback WHERE request_id = ?1 AND account_id = ?2",
                      cache_.get());
    earlier.Bind(1, verdict.request_id).Bind(2, verdict.client_account);
    LOOM_ASSIGN_OR_RETURN(bool found, earlier.Step());
    if (found) {
      return absl::AlreadyExistsError(absl::StrCat("request ", verdict.request_id,
                                                   " was already rated ", earlier.Text(0)));
    }
  }
  // The parts of the answer: each sub-task's last attempt among the records that reached it.
  std::vector<OutcomeDelta> parts;
  {
    Statement q(db_,
                "SELECT sub_task_id, model, category FROM contributions c WHERE request_id = ?1 "
                "AND in_answer = 1 AND category != 0 AND (?2 = '' OR sub_task_id = ?2) AND "
                "attempt = (SELECT MAX(attempt) FROM contributions d WHERE d.request_id = "
                "c.request_id AND d.sub_task_id = c.sub_task_id AND d.in_answer = 1) "
                "ORDER BY sub_task_id",
                cache_.get());
    q.Bind(1, verdict.request_id).Bind(2, verdict.sub_task_id);
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      const int64_t category = q.Int(2);
      if (!v1::TaskCategory_IsValid(static_cast<int>(category))) continue;
      parts.push_back({q.Text(1), static_cast<v1::TaskCategory>(category), 0, 0});
    }
  }
  if (!verdict.sub_task_id.empty() && parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", verdict.request_id,
                                                   " has no sub-task ", verdict.sub_task_id,
                                                   " in its answer"));
  }
  // The whole answer is shared equally by its parts; a part named alone takes all of it.
  ledger_rules::ShareVerdict(verdict.good, &parts);
  Statement keep(db_,
                 "INSERT INTO feedback(request_id, account_id, rating, sub_task_id, "
                 "created_at_ms) VALUES(?1, ?2, ?3, ?4, ?5)",
                 cache_.get());
  LOOM_RETURN_IF_ERROR(keep.Bind(1, verdict.request_id)
                           .Bind(2, verdict.client_account)
                           .Bind(3, verdict.good ? "good" : "bad")
                           .Bind(4, verdict.sub_task_id)
                           .Bind(5, absl::ToUnixMillis(clock_->Now()))
                           .Run());
  LOOM_RETURN_IF_ERROR(AddOutcomesLocked(parts));
  return parts;
}

absl::Status SqliteLedger::AddOutcomes(const std::vector<OutcomeDelta>& deltas) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckOutcomes(deltas));
  if (deltas.empty()) return absl::OkStatus();
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return AddOutcomesLocked(deltas); },
               /*durable=*/false);
}

absl::Status SqliteLedger::AddOutcomesLocked(const std::vector<OutcomeDelta>& deltas) {
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  for (const OutcomeDelta& d : deltas) {
    Statement add(db_,
                  "INSERT INTO outcomes(model, category, good, bad, updated_at_ms) "
                  "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(model, category) DO UPDATE SET "
                  "good = good + excluded.good, bad = bad + excluded.bad, "
                  "updated_at_ms = excluded.updated_at_ms",
                  cache_.get());
    LOOM_RETURN_IF_ERROR(add.Bind(1, d.model)
                             .Bind(2, int64_t{d.category})
                             .BindDouble(3, d.good)
                             .BindDouble(4, d.bad)
                             .Bind(5, now_ms)
                             .Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OutcomeDelta>> SqliteLedger::Outcomes() {
  absl::MutexLock lock(&mu_);
  Statement q(db_, "SELECT model, category, good, bad FROM outcomes ORDER BY model, category",
              cache_.get());
  std::vector<OutcomeDelta> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    const int64_t category = q.Int(1);
    if (!v1::TaskCategory_IsValid(static_cast<int>(category))) continue;
    out.push_back({q.Text(0), static_cast<v1::TaskCategory>(category), q.Double(2), q.Double(3)});
  }
  return out;
}

absl::StatusOr<LedgerCopy> SqliteLedger::Export() {
  absl::MutexLock lock(&mu_);
  // One read transaction: a snapshot (WAL readers see one commit throughout).
  LOOM_RETURN_IF_ERROR(Exec(db_, "BEGIN"));
  auto end = absl::MakeCleanup([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { (void)Exec(db_, "COMMIT"); });
  LedgerCopy copy;
  auto rows = [&](const char* sql, auto&& each) ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    Statement q(db_, sql);
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) return absl::OkStatus();
      each(q);
    }
  };
  LOOM_RETURN_IF_ERROR(rows("SELECT id, kind, created_at_ms FROM accounts ORDER BY id", [&](Statement& q) {
    copy.accounts.push_back({q.Text(0), q.Text(1), q.Int(2)});
  }));
  std::map<int64_t, size_t> by_id;
  LOOM_RETURN_IF_ERROR(rows("SELECT id, kind, reference, amount_micro, created_at_ms, records_digest "
                            "FROM transactions ORDER BY id",
                            [&](Statement& q) {
                              by_id[q.Int(0)] = copy.transactions.size();
                              copy.transactions.push_back(
                                  {q.Int(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4), q.Text(5), {}});
                            }));
  LOOM_RETURN_IF_ERROR(rows("SELECT txn_id, account_id, amount_micro FROM entries ORDER BY txn_id, "
                            "account_id",
                            [&](Statement& q) {
                              auto it = by_id.find(q.Int(0));
                              if (it != by_id.end()) {
                                copy.transactions[it->second].entries.emplace_back(q.Text(1), q.Int(2));
                              }
                            }));
  LOOM_RETURN_IF_ERROR(rows(absl::StrCat("SELECT ", kAllRecordColumns,
                                         " FROM contributions ORDER BY request_id, sub_task_id, attempt")
                                .c_str(),
                            [&](Statement& q) { copy.records.push_back(RecordFromRow(q)); }));
  LOOM_RETURN_IF_ERROR(rows("SELECT request_id, account_id, txn_id, response, created_at_ms FROM answers",
                            [&](Statement& q) {
                              copy.answers.push_back({q.Text(0), q.Text(1), q.Int(2), q.Blob(3), q.Int(4)});
                            }));
  LOOM_RETURN_IF_ERROR(rows("SELECT id, client_account, secret_sha256, created_at_ms, revoked_at_ms "
                            "FROM api_keys",
                            [&](Statement& q) {
                              copy.keys.push_back({q.Text(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4)});
                            }));
  LOOM_RETURN_IF_ERROR(rows("SELECT request_id, account_id, rating, sub_task_id, created_at_ms FROM "
                            "feedback",
                            [&](Statement& q) {
                              copy.verdicts.push_back({q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4)});
                            }));
  LOOM_RETURN_IF_ERROR(rows("SELECT model, category, good, bad FROM outcomes", [&](Statement& q) {
    const int64_t category = q.Int(1);
    if (v1::TaskCategory_IsValid(static_cast<int>(category))) {
      copy.outcomes.push_back({q.Text(0), static_cast<v1::TaskCategory>(category), q.Double(2), q.Double(3)});
    }
  }));
  return copy;
}

absl::StatusOr<int64_t> SqliteLedger::Balance(const std::string& account_id) {
  absl::MutexLock lock(&mu_);
  Statement query(db_, "SELECT balance_micro FROM balances WHERE account_id = ?1", cache_.get());
  query.Bind(1, account_id);
  LOOM_ASSIGN_OR_RETURN(bool row, query.Step());
  return row ? query.Int(0) : 0;
}

absl::StatusOr<int64_t> SqliteLedger::Available(const std::string& account_id) {
  absl::MutexLock lock(&mu_);
  return AvailableLocked(account_id, "");
}

absl::StatusOr<std::vector<AccountInfo>> SqliteLedger::Accounts() {
  absl::MutexLock lock(&mu_);
  Statement q(db_,
              "SELECT a.id, a.kind, "
              "(SELECT COALESCE(SUM(balance_micro), 0) FROM balances b WHERE b.account_id = a.id), "
              "(SELECT COALESCE(SUM(amount_micro), 0) FROM reservations r WHERE r.account_id = "
              "a.id AND r.expires_at_ms > ?1) FROM accounts a ORDER BY a.kind, a.id");
  q.Bind(1, absl::ToUnixMillis(clock_->Now()));
  std::vector<AccountInfo> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back({q.Text(0), q.Text(1), q.Int(2), q.Int(3)});
  }
  return out;
}

absl::StatusOr<std::vector<TransactionInfo>> SqliteLedger::RecentTransactions(int limit) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckListLimit(limit));
  absl::MutexLock lock(&mu_);
  Statement q(db_,
              "SELECT id, kind, reference, amount_micro, created_at_ms FROM transactions "
              "ORDER BY id DESC LIMIT ?1");
  q.Bind(1, int64_t{limit});
  std::vector<TransactionInfo> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back({q.Int(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4)});
  }
  return out;
}

absl::StatusOr<std::vector<PayoutRow>> SqliteLedger::Payouts(const PayoutFilter& filter) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, PayoutRow> rows;
  {
    Statement q(db_,
                "SELECT provider_id, SUM(credits_micro), SUM(token_count), "
                "COUNT(DISTINCT request_id), COUNT(DISTINCT device_id) FROM contributions "
                "WHERE created_at_ms >= ?1 AND created_at_ms < ?2 AND (?3 = '' OR provider_id = ?3) "
                "GROUP BY provider_id");
    q.Bind(1, filter.since_ms).Bind(2, filter.until_ms).Bind(3, filter.provider_id);
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      PayoutRow& r = rows[q.Text(0)];
      r.provider_id = q.Text(0);
      r.earned_micro = q.Int(1);
      r.tokens = q.Int(2);
      r.requests = q.Int(3);
      r.devices = q.Int(4);
    }
  }
  {
    Statement q(db_,
                "SELECT substr(e.account_id, 10), -SUM(e.amount_micro) FROM entries e "
                "JOIN transactions t ON t.id = e.txn_id WHERE t.kind = 'payout' "
                "AND e.account_id LIKE 'provider:%' AND t.created_at_ms >= ?1 "
                "AND t.created_at_ms < ?2 AND (?3 = '' OR e.account_id = 'provider:' || ?3) "
                "GROUP BY e.account_id");
    q.Bind(1, filter.since_ms).Bind(2, filter.until_ms).Bind(3, filter.provider_id);
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      PayoutRow& r = rows[q.Text(0)];
      r.provider_id = q.Text(0);
      r.paid_out_micro = q.Int(1);
    }
  }
  std::vector<PayoutRow> out;
  for (auto& [id, r] : rows) {
    Statement b(db_, "SELECT balance_micro FROM balances WHERE account_id = ?1");
    b.Bind(1, ProviderAccount(id));
    LOOM_ASSIGN_OR_RETURN(bool row, b.Step());
    r.unpaid_micro = row ? b.Int(0) : 0;
    out.push_back(r);
  }
  return out;
}

absl::StatusOr<VerifyReport> SqliteLedger::Verify() {
  absl::MutexLock lock(&mu_);
  VerifyReport report;
  auto fail = [&](int64_t txn, const std::string& problem) {
    report.ok = false;
    report.first_bad_transaction = txn;
    report.problem = problem;
    return report;
  };
  {
    Statement q(db_, "PRAGMA integrity_check");
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row || q.Text(0) != "ok") return fail(0, absl::StrCat("integrity_check: ", row ? q.Text(0) : ""));
  }
  {
    Statement q(db_, "PRAGMA foreign_key_check");
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row) return fail(0, absl::StrCat("foreign_key_check: a row of ", q.Text(0), " points nowhere"));
  }
  Statement all(db_,
                "SELECT id, kind, reference, amount_micro, created_at_ms, records_digest, "
                "prev_hash, hash, chain_version FROM transactions ORDER BY id");
  std::string prev;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, all.Step());
    if (!row) break;
    ++report.transactions;
    const int64_t id = all.Int(0);
    const std::string kind = all.Text(1);
    const int64_t amount = all.Int(3);
    absl::Status status;
    Entries entries = LoadEntries(db_, id, &status);
    LOOM_RETURN_IF_ERROR(status);
    if (entries.empty()) return fail(id, "transaction has no entries");
    int64_t sum = 0;
    for (const auto& [account, value] : entries) sum += value;
    if (sum != 0) return fail(id, absl::StrCat("entries sum to ", sum, ", not zero"));
    if (all.Text(6) != prev) return fail(id, "previous-hash link broken (a transaction before it was removed or changed)");
    const int version = static_cast<int>(all.Int(8));
    if (version != 1 && version != kChainVersion) {
      return fail(id, absl::StrCat("unknown chain version ", version));
    }
    const std::string expected = Sha256Hex(TxnCanonical(version, prev, id, kind, all.Text(2),
                                                        amount, all.Int(4), all.Text(5), entries));
    if (all.Text(7) != expected) return fail(id, "hash does not match its contents (edited)");
    prev = expected;
    if (kind == "settle") {
      // A settlement's reference is "settle:" + its request id, the records' key prefix.
      Statement c(db_,
                  "SELECT COALESCE(SUM(credits_micro), 0), COUNT(*) FROM contributions "
                  "WHERE request_id = ?2 AND txn_id = ?1");
      const std::string reference = all.Text(2);
      c.Bind(1, id).Bind(2, absl::StripPrefix(reference, "settle:"));
      LOOM_ASSIGN_OR_RETURN(bool crow, c.Step());
      int64_t providers = 0, fee = 0;
      for (const auto& [account, value] : entries) {
        if (AccountKind(account) == "provider") providers += value;
        if (account == "fee") fee += value;
      }
      // A client who is also a provider nets out, so compare the totals, not entry by entry.
      if (crow && c.Int(0) + fee != amount) {
        return fail(id, absl::StrCat("records credit ", c.Int(0), " + fee ", fee,
                                     " but the settlement charged ", amount));
      }
    }
  }
  {
    Statement q(db_,
                "SELECT a.id, COALESCE(b.balance_micro, 0), COALESCE(s.total, 0) FROM accounts a "
                "LEFT JOIN balances b ON b.account_id = a.id LEFT JOIN (SELECT account_id, "
                "SUM(amount_micro) AS total FROM entries GROUP BY account_id) s "
                "ON s.account_id = a.id ORDER BY a.id");
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      if (q.Int(1) != q.Int(2)) {
        return fail(0, absl::StrCat("balance of ", q.Text(0), " is ", q.Int(1),
                                    " but its entries sum to ", q.Int(2)));
      }
    }
  }
  return report;
}

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
  ApiKeyInfo info{id, account, absl::ToUnixMillis(clock_->Now()), 0};
  LOOM_RETURN_IF_ERROR(Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    LOOM_RETURN_IF_ERROR(EnsureAccountLocked(account));
    Statement insert(db_,
                     "INSERT INTO api_keys(id, client_account, secret_sha256, created_at_ms) "
                     "VALUES(?1, ?2, ?3, ?4)");
    return insert.Bind(1, id).Bind(2, account).Bind(3, Sha256Hex(secret)).Bind(4, info.created_ms).Run();
  }));
  return std::make_pair(info, secret);
}

absl::StatusOr<std::vector<ApiKeyInfo>> SqliteLedger::ListKeys() {
  absl::MutexLock lock(&mu_);
  Statement q(db_, "SELECT id, client_account, created_at_ms, revoked_at_ms FROM api_keys ORDER BY created_at_ms, id");
  std::vector<ApiKeyInfo> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back({q.Text(0), q.Text(1), q.Int(2), q.Int(3)});
  }
  return out;
}

absl::Status SqliteLedger::RevokeKey(const std::string& key_id) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    Statement u(db_, "UPDATE api_keys SET revoked_at_ms = ?1 WHERE id = ?2 AND revoked_at_ms = 0");
    LOOM_RETURN_IF_ERROR(u.Bind(1, absl::ToUnixMillis(clock_->Now())).Bind(2, key_id).Run());
    if (sqlite3_changes(db_) == 0) {
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
  Statement q(db_,
              "SELECT client_account, revoked_at_ms FROM api_keys WHERE secret_sha256 = ?1",
              cache_.get());
  q.Bind(1, Sha256Hex(api_key));
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return absl::UnauthenticatedError("unknown API key");
  if (q.Int(1) != 0) return absl::UnauthenticatedError("this API key was revoked");
  return q.Text(0);
}

}  // namespace loom
