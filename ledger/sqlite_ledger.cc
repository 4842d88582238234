#include "ledger/sqlite_ledger.h"

#include <map>
#include <utility>
#include <vector>

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, absl::string_view sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
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
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  }

 private:
  sqlite3* db_;
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

// Migration i takes the schema from version i to i+1. Never edit a released migration; append.
constexpr const char* kMigrations[] = {
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
};
static_assert(std::size(kMigrations) == SqliteLedger::kSchemaVersion);

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteLedger>> SqliteLedger::Open(const LedgerOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("ledger: empty database path");
  if (options.synchronous != "FULL" && options.synchronous != "NORMAL" &&
      options.synchronous != "OFF") {
    return absl::InvalidArgumentError(absl::StrCat(
        "ledger: synchronous must be FULL, NORMAL or OFF, not '", options.synchronous, "'"));
  }
  sqlite3* db = nullptr;
  int flags = options.read_only ? SQLITE_OPEN_READONLY
                                : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_FULLMUTEX;
  int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteStatus(db, rc, absl::StrCat("open ", options.path));
    sqlite3_close(db);
    return status;
  }
  auto ledger = std::unique_ptr<SqliteLedger>(
      new SqliteLedger(db, options.clock ? options.clock : Clock::Real()));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  absl::MutexLock lock(&ledger->mu_);
  LOOM_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys=ON"));
  if (!options.read_only) {
    LOOM_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL"));
    LOOM_RETURN_IF_ERROR(
        Exec(db, absl::StrCat("PRAGMA synchronous=", options.synchronous).c_str()));
    LOOM_RETURN_IF_ERROR(ledger->Migrate());
  } else {
    Statement version(db, "PRAGMA user_version");
    LOOM_ASSIGN_OR_RETURN(bool row, version.Step());
    if (!row || version.Int(0) == 0) {
      return absl::NotFoundError(absl::StrCat(options.path, ": not a Loom ledger (no schema)"));
    }
  }
  return ledger;
}

SqliteLedger::~SqliteLedger() { sqlite3_close(db_); }

absl::Status SqliteLedger::Migrate() {
  LOOM_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  auto migrate = [&]() -> absl::Status {
    Statement version(db_, "PRAGMA user_version");
    LOOM_ASSIGN_OR_RETURN(bool row, version.Step());
    int current = row ? static_cast<int>(version.Int(0)) : 0;
    if (current > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("ledger schema version ", current, " is newer than this build (",
                       kSchemaVersion, "); upgrade Loom"));
    }
    for (int v = current; v < kSchemaVersion; ++v) {
      LOOM_RETURN_IF_ERROR(Exec(db_, kMigrations[v]));
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

absl::StatusOr<Settlement> SqliteLedger::Settle(const SettlementRequest& request) {
  if (request.request_id.empty()) return absl::InvalidArgumentError("settle: empty request id");
  if (request.client_account.empty()) {
    return absl::InvalidArgumentError("settle: empty client account");
  }
  for (const auto& r : request.records) {
    if (r.credits_micro() < 0 || r.token_count() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("settle ", request.request_id, ": negative tokens or credits"));
    }
    if (r.provider_id().empty() || r.device_id().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("settle ", request.request_id, ": record without device or provider"));
    }
  }
  absl::MutexLock lock(&mu_);
  LOOM_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  absl::StatusOr<Settlement> result = SettleLocked(request);
  if (!result.ok() || result->already_settled) {
    (void)Exec(db_, "ROLLBACK");
    return result;
  }
  LOOM_RETURN_IF_ERROR(Exec(db_, "COMMIT"));
  return result;
}

absl::StatusOr<Settlement> SqliteLedger::SettleLocked(const SettlementRequest& request) {
  const std::string reference = absl::StrCat("settle:", request.request_id);
  int64_t total = 0;
  std::map<std::string, int64_t> by_provider;
  for (const auto& r : request.records) {
    total += r.credits_micro();
    by_provider[ProviderAccount(r.provider_id())] += r.credits_micro();
  }

  {
    Statement existing(db_,
                       "SELECT t.id, t.amount_micro, (SELECT COUNT(*) FROM contributions c "
                       "WHERE c.txn_id = t.id) FROM transactions t WHERE t.reference = ?1");
    existing.Bind(1, reference);
    LOOM_ASSIGN_OR_RETURN(bool found, existing.Step());
    if (found) {
      if (existing.Int(1) != total ||
          existing.Int(2) != static_cast<int64_t>(request.records.size())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "request ", request.request_id, " was already settled with different records (",
            existing.Int(2), " records, ", existing.Int(1), " micro-credits)"));
      }
      return Settlement{absl::StrCat(existing.Int(0)), existing.Int(1), true};
    }
  }

  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  auto ensure_account = [&](const std::string& id, const char* kind) -> absl::Status {
    Statement insert(db_,
                     "INSERT INTO accounts(id, kind, created_at_ms) VALUES(?1, ?2, ?3) "
                     "ON CONFLICT(id) DO NOTHING");
    return insert.Bind(1, id).Bind(2, kind).Bind(3, now_ms).Run();
  };
  LOOM_RETURN_IF_ERROR(ensure_account(request.client_account, "client"));
  for (const auto& [account, amount] : by_provider) {
    LOOM_RETURN_IF_ERROR(ensure_account(account, "provider"));
  }

  Statement txn(db_,
                "INSERT INTO transactions(kind, reference, amount_micro, created_at_ms) "
                "VALUES('settle', ?1, ?2, ?3)");
  LOOM_RETURN_IF_ERROR(txn.Bind(1, reference).Bind(2, total).Bind(3, now_ms).Run());
  const int64_t txn_id = sqlite3_last_insert_rowid(db_);

  // Entries: the client pays the total, each provider earns its records. Sum is zero.
  std::map<std::string, int64_t> entries = by_provider;
  entries[request.client_account] -= total;
  for (const auto& [account, amount] : entries) {
    Statement entry(db_, "INSERT INTO entries(txn_id, account_id, amount_micro) VALUES(?1,?2,?3)");
    LOOM_RETURN_IF_ERROR(entry.Bind(1, txn_id).Bind(2, account).Bind(3, amount).Run());
  }
  for (const auto& r : request.records) {
    Statement row(db_,
                  "INSERT INTO contributions(request_id, sub_task_id, attempt, txn_id, device_id, "
                  "provider_id, model, role, token_count, weight, credits_micro, created_at_ms) "
                  "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
    row.Bind(1, request.request_id)
        .Bind(2, r.sub_task_id())
        .Bind(3, int64_t{r.attempt()})
        .Bind(4, txn_id)
        .Bind(5, r.device_id())
        .Bind(6, r.provider_id())
        .Bind(7, r.model())
        .Bind(8, int64_t{r.role()})
        .Bind(9, r.token_count())
        .BindDouble(10, r.weight())
        .Bind(11, r.credits_micro())
        .Bind(12, now_ms);
    LOOM_RETURN_IF_ERROR(row.Run());
  }
  return Settlement{absl::StrCat(txn_id), total, false};
}

absl::StatusOr<std::vector<v1::ContributionRecord>> SqliteLedger::ListRecords(
    const RecordFilter& filter) {
  absl::MutexLock lock(&mu_);
  Statement query(db_,
                  "SELECT request_id, sub_task_id, attempt, device_id, provider_id, model, role, "
                  "token_count, weight, credits_micro, created_at_ms FROM contributions "
                  "WHERE (?1 = '' OR request_id = ?1) AND (?2 = '' OR provider_id = ?2) "
                  "ORDER BY created_at_ms, request_id, sub_task_id, attempt LIMIT ?3");
  query.Bind(1, filter.request_id).Bind(2, filter.provider_id).Bind(3, filter.limit);
  std::vector<v1::ContributionRecord> records;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    v1::ContributionRecord& r = records.emplace_back();
    r.set_request_id(query.Text(0));
    r.set_sub_task_id(query.Text(1));
    r.set_attempt(static_cast<int32_t>(query.Int(2)));
    r.set_device_id(query.Text(3));
    r.set_provider_id(query.Text(4));
    r.set_model(query.Text(5));
    r.set_role(static_cast<v1::ContributionRole>(query.Int(6)));
    r.set_token_count(query.Int(7));
    r.set_weight(query.Double(8));
    r.set_credits_micro(query.Int(9));
    r.set_created_unix_ms(query.Int(10));
  }
  return records;
}

absl::StatusOr<int64_t> SqliteLedger::Balance(const std::string& account_id) {
  absl::MutexLock lock(&mu_);
  Statement query(db_, "SELECT COALESCE(SUM(amount_micro), 0) FROM entries WHERE account_id = ?1");
  query.Bind(1, account_id);
  LOOM_ASSIGN_OR_RETURN(bool row, query.Step());
  return row ? query.Int(0) : 0;
}

}  // namespace loom
