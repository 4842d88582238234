// File: ledger/postgres_ledger.cc
#include "ledger/postgres_ledger.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include <libpq-fe.h>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/ledger_rules.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

// Migration i takes the schema from version i to i+1. Never edit a released migration; append.
constexpr const char* kMigrations[] = {
    // 1: the books, the routing statistics, the keys.
    R"sql(
CREATE TABLE accounts(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('client', 'provider', 'mint', 'payout', 'fee')),
  created_at_ms BIGINT NOT NULL);
CREATE TABLE balances(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  balance_micro BIGINT NOT NULL);
CREATE TABLE chains(
  chain TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  head TEXT NOT NULL);
CREATE TABLE transactions(
  id BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  amount_micro BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  records_digest TEXT NOT NULL,
  chain TEXT NOT NULL,
  chain_seq BIGINT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (chain, chain_seq));
CREATE INDEX transactions_by_kind ON transactions(kind, created_at_ms);
CREATE TABLE entries(
  txn_id BIGINT NOT NULL REFERENCES transactions(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro BIGINT NOT NULL,
  PRIMARY KEY (txn_id, account_id));
CREATE INDEX entries_by_account ON entries(account_id);
CREATE TABLE contributions(
  request_id TEXT NOT NULL,
  sub_task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  txn_id BIGINT NOT NULL REFERENCES transactions(id),
  device_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  model TEXT NOT NULL,
  role INTEGER NOT NULL,
  token_count BIGINT NOT NULL CHECK (token_count >= 0),
  weight DOUBLE PRECISION NOT NULL,
  credits_micro BIGINT NOT NULL CHECK (credits_micro >= 0),
  created_at_ms BIGINT NOT NULL,
  category INTEGER NOT NULL DEFAULT 0,
  in_answer BOOLEAN NOT NULL DEFAULT FALSE,
  PRIMARY KEY (request_id, sub_task_id, attempt));
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
CREATE INDEX contributions_by_txn ON contributions(txn_id);
CREATE TABLE reservations(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro BIGINT NOT NULL CHECK (amount_micro >= 0),
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  holder TEXT NOT NULL);
CREATE INDEX reservations_by_account ON reservations(account_id);
CREATE INDEX reservations_by_holder ON reservations(holder);
CREATE TABLE answers(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  txn_id BIGINT NOT NULL REFERENCES transactions(id),
  response BYTEA NOT NULL,
  created_at_ms BIGINT NOT NULL);
CREATE INDEX answers_by_age ON answers(created_at_ms);
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  client_account TEXT NOT NULL REFERENCES accounts(id),
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE feedback(
  request_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  rating TEXT NOT NULL CHECK (rating IN ('good', 'bad')),
  sub_task_id TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (request_id, account_id));
CREATE TABLE outcomes(
  model TEXT NOT NULL,
  category INTEGER NOT NULL,
  good DOUBLE PRECISION NOT NULL CHECK (good >= 0),
  bad DOUBLE PRECISION NOT NULL CHECK (bad >= 0),
  updated_at_ms BIGINT NOT NULL,
  PRIMARY KEY (model, category));
INSERT INTO accounts(id, kind, created_at_ms) VALUES ('mint', 'mint', 0), ('payout', 'payout', 0),
  ('fee', 'fee', 0) ON CONFLICT (id) DO NOTHING;
INSERT INTO balances(account_id, balance_micro) VALUES ('mint', 0), ('payout', 0)
  ON CONFLICT (account_id) DO NOTHING;
)sql",
    // 2: the balance bound (LedgerAdmin::kMaxBalanceMicro = INT64_MAX / 4) held by the table,
    // so a balance move needs no answer read back before the commit.
    R"sql(
ALTER TABLE balances ADD CONSTRAINT balances_bounded
  CHECK (balance_micro BETWEEN -2305843009213693951 AND 2305843009213693951);
)sql",
};
static_assert(std::size(kMigrations) == PostgresLedger::kSchemaVersion);

// Every migration and the schema version run under this advisory lock.
constexpr int64_t kMigrationLock = 0x4c4f4f4d;  // "LOOM"

// Accounts a settlement debits keep a balance row (clients: locked by every reservation and
// settlement of theirs), and so do mint and payout (moved by grants and payouts only). Those a
// settlement credits -- providers and the fee -- would be rows every settlement paying them
// waits on: their balance is the sum of their entries instead (credits only ever add, so a
// payout racing a credit sees at most too little).
bool HasBalanceRow(const std::string& account) {
  const std::string kind = AccountKind(account);
  return kind == "client" || kind == "mint" || kind == "payout";
}

constexpr char kDerivedBalance[] =
    "SELECT COALESCE(SUM(amount_micro), 0) FROM entries WHERE account_id = $1";

int64_t ToInt(const char* text) {
  int64_t v = 0;
  return text && absl::SimpleAtoi(text, &v) ? v : 0;
}

double ToDouble(const char* text) {
  double v = 0;
  return text && absl::SimpleAtod(text, &v) ? v : 0;
}

// A result, cleared when it goes.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& other) noexcept : r_(other.r_) { other.r_ = nullptr; }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  int rows() const { return PQntuples(r_); }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
  }
  int64_t Int(int row, int col) const { return ToInt(PQgetvalue(r_, row, col)); }
  double Double(int row, int col) const { return ToDouble(PQgetvalue(r_, row, col)); }
  bool Bool(int row, int col) const { return PQgetvalue(r_, row, col)[0] == 't'; }
  // A BYTEA column (text results carry it hex-escaped).
  std::string Bytes(int row, int col) const {
    size_t n = 0;
    unsigned char* raw =
        PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col)), &n);
    if (!raw) return "";
    std::string out(reinterpret_cast<char*>(raw), n);
    PQfreemem(raw);
    return out;
  }
  int64_t affected() const { return ToInt(PQcmdTuples(r_)); }
  PGresult* raw() const { return r_; }

 private:
  PGresult* r_;
};

// One statement parameter (text, or BYTEA bytes sent in binary).
struct Param {
  Param(const std::string& s) : value(s) {}  // NOLINT: parameters read as values
  Param(const char* s) : value(s) {}         // NOLINT
  Param(int64_t v) : value(absl::StrCat(v)) {}  // NOLINT
  Param(int v) : value(absl::StrCat(v)) {}      // NOLINT
  Param(double v) : value(absl::StrFormat("%.17g", v)) {}  // NOLINT: exact round trip
  static Param Bytes(const std::string& b) {
    Param p(b);
    p.binary = true;
    return p;
  }
  std::string value;
  bool binary = false;
};

// SQLSTATEs the transaction loop retries: another transaction won a race.
bool Retryable(const absl::Status& s) {
  return s.GetPayload("loom.dev/pg-retry").has_value();
}

}  // namespace

// A pooled connection and the statements prepared on it (parsed and planned once per
// connection, not once per call: on a small machine the server's CPU is what settlements
// wait for). Used by one call at a time.
struct PostgresLedger::Session {
  explicit Session(PGconn* c) : conn(c) { PQsetNoticeReceiver(conn, &Session::OnNotice, this); }
  ~Session() { PQfinish(conn); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // What the server says outside a statement. A FATAL one is its goodbye before it closes the
  // connection (a terminated backend, a shutdown); notices and warnings are dropped (the
  // ledger's statements raise none it acts on, and libpq would print them on stderr).
  static void OnNotice(void* arg, const PGresult* r) {
    const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity && (std::string_view(severity) == "FATAL" || std::string_view(severity) == "PANIC")) {
      static_cast<Session*>(arg)->closing = true;
    }
  }

  PGconn* conn;
  absl::flat_hash_map<std::string, std::string> prepared;  // SQL -> statement name
  int64_t names = 0;     // statement names handed out (each once)
  bool closing = false;  // the server said goodbye
};

// One pooled connection; statements go through Exec. Statements whose results decide nothing
// (BEGIN, an account insert, a row lock) are deferred: they travel with the next statement in
// one round trip (libpq pipeline mode), and their errors are that statement's.
class PostgresLedger::Conn {
 public:
  struct Statement {
    std::string sql;
    std::vector<Param> params;
  };

  explicit Conn(Session* s) : c_(s->conn), prepared_(&s->prepared), names_(&s->names) {}
  // Several statements, no parameters (migrations).
  absl::Status Script(const std::string& sql) {
    return Check(Result(PQexec(c_, sql.c_str()))).status();
  }
  // Sent with the next Exec, Pipeline or Commit.
  void Defer(Statement statement) { deferred_.push_back(std::move(statement)); }
  // Whether anything was sent since the connection was taken (a transaction may be open).
  bool sent() const { return sent_; }
  // Drops what was deferred and not sent.
  void DropDeferred() { deferred_.clear(); }
  // Whether Commit ended the transaction.
  bool committed() const { return committed_; }

  absl::StatusOr<Result> Exec(const std::string& sql, const std::vector<Param>& params = {}) {
    sent_ = true;
    if (!deferred_.empty()) {
      std::vector<Statement> batch = TakeDeferred();
      batch.push_back({sql, params});
      std::optional<Result> last;
      LOOM_RETURN_IF_ERROR(Run(batch, &last));
      if (!last) return absl::UnavailableError("postgresql: the pipeline was cut off");
      return std::move(*last);
    }
    return ExecNow(sql, params);
  }
  // Statements whose results decide nothing, in one round trip; the first failure is
  // returned (the server skips the rest).
  absl::Status Pipeline(std::vector<Statement> statements) {
    std::vector<Statement> batch = TakeDeferred();
    for (Statement& st : statements) batch.push_back(std::move(st));
    if (batch.empty()) return absl::OkStatus();
    sent_ = true;
    return Run(batch, nullptr);
  }
  // The transaction's last writes and its COMMIT, in one round trip.
  absl::Status Commit(std::vector<Statement> statements) {
    statements.push_back({"COMMIT", {}});
    LOOM_RETURN_IF_ERROR(Pipeline(std::move(statements)));
    committed_ = true;
    return absl::OkStatus();
  }
  absl::StatusOr<Result> Check(Result result) {
    PGresult* r = result.raw();
    const ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return result;
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string code = state ? state : "";
    const std::string message =
        absl::StrCat("postgresql: ", r ? PQresultErrorMessage(r) : PQerrorMessage(c_));
    absl::Status status;
    // Raced (serialisation, deadlock, a unique key another coordinator took first), or a
    // statement this connection had prepared is gone (DEALLOCATE, a pooler between): again.
    if (code == "40001" || code == "40P01" || code == "23505" || code == "26000") {
      status = absl::AbortedError(message);
      status.SetPayload("loom.dev/pg-retry", absl::Cord(code));
    } else if (code.rfind("08", 0) == 0 || code.rfind("57", 0) == 0 || code.empty() ||
               PQstatus(c_) != CONNECTION_OK) {
      // The connection broke, or the server is shutting down or terminated this backend.
      status = absl::UnavailableError(absl::StrCat("ledger: PostgreSQL is unavailable: ", message));
    } else if (code == "23514" && absl::StrContains(message, "balances_bounded")) {
      status = absl::OutOfRangeError(absl::StrCat(
          "the transaction would take a balance past ", FormatCredits(LedgerAdmin::kMaxBalanceMicro),
          " credits, the most the ledger holds; refused"));
    } else if (code.rfind("23", 0) == 0) {
      status = absl::FailedPreconditionError(message);
    } else {
      status = absl::InternalError(message);
    }
    return status;
  }
  // One integer from the first row (0 when there is none).
  absl::StatusOr<int64_t> Int(const std::string& sql, const std::vector<Param>& params = {}) {
    LOOM_ASSIGN_OR_RETURN(Result r, Exec(sql, params));
    return r.rows() > 0 ? r.Int(0, 0) : 0;
  }
  PGconn* raw() { return c_; }

 private:
  std::vector<Statement> TakeDeferred() {
    std::vector<Statement> out;
    out.swap(deferred_);
    return out;
  }
  // Statements with parameters are prepared, up to kMaxPrepared per connection (statements
  // whose text varies with a row count stay bounded); the rest are sent unnamed.
  static constexpr size_t kMaxPrepared = 256;
  // Whether `st` goes prepared: it has parameters, and is prepared already or there is room.
  bool Preparable(const Statement& st) const {
    return !st.params.empty() &&
           (prepared_->contains(st.sql) || prepared_->size() < kMaxPrepared);
  }
  // A statement name never used on this connection before (one whose PREPARE failed, or that
  // was forgotten, is not reused: the server may still hold it).
  std::string NewName() { return absl::StrCat("loom_", (*names_)++); }
  // The server lost them (a reset connection) or refused one: start again.
  void ForgetPreparedOn(const absl::Status& s) {
    if (absl::StrContains(s.message(), "prepared statement")) prepared_->clear();
  }
  struct Values {
    explicit Values(const std::vector<Param>& params) {
      for (const Param& p : params) {
        values.push_back(p.value.data());
        lengths.push_back(static_cast<int>(p.value.size()));
        formats.push_back(p.binary ? 1 : 0);
      }
    }
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
  };
  absl::StatusOr<Result> ExecNow(const std::string& sql, const std::vector<Param>& params) {
    const Values v(params);
    const int n = static_cast<int>(params.size());
    if (!Preparable({sql, params})) {
      return Check(Result(PQexecParams(c_, sql.c_str(), n, nullptr, v.values.data(),
                                       v.lengths.data(), v.formats.data(), /*text=*/0)));
    }
    std::string name;
    if (auto it = prepared_->find(sql); it != prepared_->end()) {
      name = it->second;
    } else {
      name = NewName();
      absl::Status prepared =
          Check(Result(PQprepare(c_, name.c_str(), sql.c_str(), n, nullptr))).status();
      if (!prepared.ok()) {
        ForgetPreparedOn(prepared);
        return prepared;
      }
      prepared_->emplace(sql, name);
    }
    absl::StatusOr<Result> r = Check(Result(PQexecPrepared(
        c_, name.c_str(), n, v.values.data(), v.lengths.data(), v.formats.data(), /*text=*/0)));
    if (!r.ok()) ForgetPreparedOn(r.status());
    return r;
  }
  // Sends `statements` in one pipeline; the first failure is returned, and with `last` the
  // last statement's result when everything succeeded.
  absl::Status Run(const std::vector<Statement>& statements, std::optional<Result>* last) {
    if (PQenterPipelineMode(c_) != 1) {
      for (const Statement& st : statements) {
        LOOM_ASSIGN_OR_RETURN(Result r, ExecNow(st.sql, st.params));
        if (last) last->emplace(std::move(r));
      }
      return absl::OkStatus();
    }
    // What was sent, in order: each statement, preceded by its PREPARE the first time.
    struct Sent {
      size_t statement;
      std::string prepare;  // the SQL a PREPARE result confirms; empty for a statement
    };
    std::vector<Sent> sent;
    absl::flat_hash_map<std::string, std::string> preparing;  // in this pipeline
    absl::Status first;
    for (size_t i = 0; i < statements.size(); ++i) {
      const Statement& st = statements[i];
      const Values v(st.params);
      const int n = static_cast<int>(st.params.size());
      std::string name;
      if (auto it = preparing.find(st.sql); it != preparing.end()) {
        name = it->second;
      } else if (auto known = prepared_->find(st.sql); known != prepared_->end()) {
        name = known->second;
      } else if (Preparable(st)) {
        name = NewName();
        if (PQsendPrepare(c_, name.c_str(), st.sql.c_str(), n, nullptr) != 1) {
          first = absl::UnavailableError(absl::StrCat("postgresql: ", PQerrorMessage(c_)));
          break;
        }
        preparing.emplace(st.sql, name);
        sent.push_back({i, st.sql});
      }
      const int ok =
          name.empty()
              ? PQsendQueryParams(c_, st.sql.c_str(), n, nullptr, v.values.data(),
                                  v.lengths.data(), v.formats.data(), 0)
              : PQsendQueryPrepared(c_, name.c_str(), n, v.values.data(), v.lengths.data(),
                                    v.formats.data(), 0);
      if (ok != 1) {
        first = absl::UnavailableError(absl::StrCat("postgresql: ", PQerrorMessage(c_)));
        break;
      }
      sent.push_back({i, ""});
    }
    PQpipelineSync(c_);
    // Every result, then its terminating null, then the sync. Two nulls in a row mean nothing
    // more is coming (a broken connection).
    size_t at = 0;
    int nulls = 0;
    while (true) {
      PGresult* r = PQgetResult(c_);
      if (r == nullptr) {
        if (++nulls >= 2 || PQstatus(c_) != CONNECTION_OK) {
          if (first.ok()) first = absl::UnavailableError("postgresql: the pipeline was cut off");
          break;
        }
        ++at;  // the end of one result
        continue;
      }
      nulls = 0;
      const ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        break;
      }
      if (st == PGRES_PIPELINE_ABORTED) {
        PQclear(r);
        continue;
      }
      absl::StatusOr<Result> checked = Check(Result(r));
      const Sent* what = at < sent.size() ? &sent[at] : nullptr;
      if (!checked.ok()) {
        if (first.ok()) first = checked.status();
      } else if (what && !what->prepare.empty()) {
        prepared_->emplace(what->prepare, preparing[what->prepare]);
      } else if (last && what && what->statement + 1 == statements.size()) {
        last->emplace(*std::move(checked));
      }
      if (PQstatus(c_) != CONNECTION_OK) break;
    }
    if (!first.ok()) ForgetPreparedOn(first);
    PQexitPipelineMode(c_);
    return first;
  }

  PGconn* c_;
  absl::flat_hash_map<std::string, std::string>* prepared_;
  int64_t* names_;
  std::vector<Statement> deferred_;
  bool sent_ = false;
  bool committed_ = false;
};

namespace {

using Conn = PostgresLedger::Conn;

absl::Status EnsureAccount(Conn& c, const std::string& id, int64_t now_ms) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckAccountId(id));
  c.Defer({"INSERT INTO accounts(id, kind, created_at_ms) VALUES($1, $2, $3) "
           "ON CONFLICT (id) DO NOTHING",
           {id, AccountKind(id), now_ms}});
  if (HasBalanceRow(id)) {
    c.Defer({"INSERT INTO balances(account_id, balance_micro) VALUES($1, 0) "
             "ON CONFLICT (account_id) DO NOTHING",
             {id}});
  }
  return absl::OkStatus();
}

// Locks the row every move of `account` is serialised on, for the rest of the transaction
// (deferred: it travels with the next statement): the balance row, or for an account whose
// balance is derived (a provider's payouts) its account row.
void Lock(Conn& c, const std::string& account) {
  c.Defer({HasBalanceRow(account) ? "SELECT 1 FROM balances WHERE account_id = $1 FOR UPDATE"
                                  : "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
           {account}});
}

// Balance minus live reservations (but `except`'s); with `lock`, the balance row is locked
// for the rest of the transaction first.
absl::StatusOr<int64_t> AvailableOf(Conn& c, const std::string& account, const std::string& except,
                                    int64_t now_ms, bool lock) {
  // The lock is a statement of its own: under READ COMMITTED the reads after it take a new
  // snapshot, so they see what the previous holder of the lock committed (reads in the locking
  // statement itself would not).
  if (lock) Lock(c, account);
  LOOM_ASSIGN_OR_RETURN(
      Result r, c.Exec(absl::StrCat("SELECT ",
                                    HasBalanceRow(account)
                                        ? "(SELECT balance_micro FROM balances WHERE account_id = $1)"
                                        : "(SELECT COALESCE(SUM(amount_micro), 0) FROM entries "
                                          "WHERE account_id = $1)",
                                    ", (SELECT COALESCE(SUM(amount_micro), 0) FROM reservations "
                                    "WHERE account_id = $1 AND expires_at_ms > $2 AND request_id <> $3)"),
                       {account, now_ms, except}));
  return r.Int(0, 0) - r.Int(0, 1);
}

// Which of a holder's chains a reference goes to (FNV-1a: the same in every process).
uint64_t ShardOf(absl::string_view reference, int shards) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : reference) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h % static_cast<uint64_t>(shards);
}

absl::Status AddOutcomesIn(Conn& c, const std::vector<OutcomeDelta>& deltas, int64_t now_ms) {
  for (const OutcomeDelta& d : deltas) {
    LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO outcomes(model, category, good, bad, updated_at_ms) "
                                "VALUES($1, $2, $3, $4, $5) ON CONFLICT (model, category) DO "
                                "UPDATE SET good = outcomes.good + excluded.good, bad = "
                                "outcomes.bad + excluded.bad, updated_at_ms = excluded.updated_at_ms",
                                {d.model, int64_t{d.category}, d.good, d.bad, now_ms})
                             .status());
  }
  return absl::OkStatus();
}

std::string ChainCanonical(const std::string& chain, int64_t seq, const std::string& txn) {
  return absl::StrCat(chain.size(), ":", chain, absl::StrCat(seq).size(), ":", seq, txn);
}

// Appends a transaction: moves the balances (the paying account's row is locked already),
// locks its chain's head, and queues its rows and the new head in `writes` (the caller sends
// them with its own, in one round trip). Returns its id.
absl::StatusOr<int64_t> Append(Conn& c, const PostgresLedgerOptions& options, int64_t now_ms,
                               const std::string& kind, const std::string& reference,
                               int64_t amount, const std::string& digest, Entries entries,
                               std::vector<Conn::Statement>* writes) {
  int64_t sum = 0;
  for (const auto& [account, value] : entries) sum += value;
  if (sum != 0) {
    return absl::InternalError(absl::StrCat("ledger: entries of ", reference, " sum to ", sum));
  }
  std::sort(entries.begin(), entries.end());
  // Balance moves in account order; the table's bound refuses a move past kMaxBalanceMicro.
  // The rows they move are locked now, before the chain head, so the head stays the last
  // lock every transaction takes (a grant's client row would otherwise be locked after it).
  std::vector<std::string> rows;
  for (const auto& [account, value] : entries) {
    if (!HasBalanceRow(account)) continue;
    rows.push_back(account);
    writes->push_back({"UPDATE balances SET balance_micro = balance_micro + $2::bigint WHERE "
                       "account_id = $1",
                       {account, value}});
  }
  if (rows.size() > 1) {
    std::string list = "{";
    for (size_t i = 0; i < rows.size(); ++i) absl::StrAppend(&list, i ? "," : "", "\"", rows[i], "\"");
    list += "}";
    c.Defer({"SELECT account_id FROM balances WHERE account_id = ANY($1::text[]) "
             "ORDER BY account_id FOR UPDATE",
             {list}});
  }
  const std::string chain = absl::StrCat(
      options.holder, "/", ShardOf(reference, options.chain_shards));
  // Created on first use; the no-op update locks the head and reads it, with the new
  // transaction's id, in one round trip.
  LOOM_ASSIGN_OR_RETURN(Result head,
                        c.Exec("INSERT INTO chains(chain, seq, head) VALUES($1, 0, '') "
                               "ON CONFLICT (chain) DO UPDATE SET chain = excluded.chain "
                               "RETURNING seq, head, "
                               "nextval(pg_get_serial_sequence('transactions', 'id'))",
                               {chain}));
  if (head.rows() != 1) return absl::InternalError("ledger: chain head vanished");
  const int64_t seq = head.Int(0, 0) + 1;
  const std::string prev = head.Text(0, 1);
  const int64_t id = head.Int(0, 2);
  const std::string hash = Sha256Hex(ChainCanonical(
      chain, seq,
      TxnCanonical(kChainVersion, prev, id, kind, reference, amount, now_ms, digest, entries)));
  writes->push_back({"INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
                     "records_digest, chain, chain_seq, prev_hash, hash) "
                     "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                     {id, kind, reference, amount, now_ms, digest, chain, seq, prev, hash}});
  std::string sql = "INSERT INTO entries(txn_id, account_id, amount_micro) VALUES";
  std::vector<Param> params = {id};
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StrAppend(&sql, i ? "," : "", "($1, $", 2 * i + 2, ", $", 2 * i + 3, ")");
    params.emplace_back(entries[i].first);
    params.emplace_back(entries[i].second);
  }
  writes->push_back({sql, params});
  writes->push_back({"UPDATE chains SET seq = $2, head = $3 WHERE chain = $1", {chain, seq, hash}});
  return id;
}

constexpr char kRecordColumns[] =
    "request_id, sub_task_id, attempt, device_id, provider_id, model, role, token_count, weight, "
    "credits_micro, created_at_ms, category, in_answer";

v1::ContributionRecord RecordFromRow(const Result& q, int row) {
  v1::ContributionRecord r;
  r.set_request_id(q.Text(row, 0));
  r.set_sub_task_id(q.Text(row, 1));
  r.set_attempt(static_cast<int32_t>(q.Int(row, 2)));
  r.set_device_id(q.Text(row, 3));
  r.set_provider_id(q.Text(row, 4));
  r.set_model(q.Text(row, 5));
  r.set_role(static_cast<v1::ContributionRole>(q.Int(row, 6)));
  r.set_token_count(q.Int(row, 7));
  r.set_weight(q.Double(row, 8));
  r.set_credits_micro(q.Int(row, 9));
  r.set_created_unix_ms(q.Int(row, 10));
  const int64_t category = q.Int(row, 11);
  if (v1::TaskCategory_IsValid(static_cast<int>(category))) {
    r.set_category(static_cast<v1::TaskCategory>(category));
  }
  r.set_in_answer(q.Bool(row, 12));
  return r;
}

}  // namespace

// ---- Opening, the pool, transactions ----

PostgresLedger::PostgresLedger(const PostgresLedgerOptions& options, std::vector<pg_conn*> pool)
    : options_(options),
      clock_(options.clock ? options.clock : Clock::Real()),
      all_() {
  absl::MutexLock lock(&mu_);
  for (PGconn* c : pool) {
    all_.push_back(std::make_unique<Session>(c));
    idle_.push_back(all_.back().get());
  }
}

PostgresLedger::~PostgresLedger() {
  // The sessions close their connections.
}

absl::StatusOr<std::unique_ptr<PostgresLedger>> PostgresLedger::Open(
    const PostgresLedgerOptions& options) {
  if (options.conninfo.empty()) return absl::InvalidArgumentError("ledger: empty PostgreSQL conninfo");
  if (options.connections < 1 || options.connections > 256) {
    return absl::InvalidArgumentError("ledger: connections must be 1-256");
  }
  if (options.chain_shards < 1 || options.chain_shards > 64) {
    return absl::InvalidArgumentError("ledger: chain_shards must be 1-64");
  }
  if (options.fee_bps < 0 || options.fee_bps > 10000) {
    return absl::InvalidArgumentError("ledger: fee_bps must be 0-10000");
  }
  if (options.holder.empty()) return absl::InvalidArgumentError("ledger: empty holder");
  std::vector<PGconn*> pool;
  auto close_all = absl::MakeCleanup([&] {
    for (PGconn* c : pool) PQfinish(c);
  });
  for (int i = 0; i < options.connections; ++i) {
    // The conninfo may be a URI or keywords (expand_dbname); a password goes beside it, never
    // into a string that might be logged.
    const char* keywords[] = {"dbname", options.password.empty() ? nullptr : "password", nullptr};
    const char* values[] = {options.conninfo.c_str(), options.password.c_str(), nullptr};
    PGconn* c = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
      const std::string why = c ? PQerrorMessage(c) : "out of memory";
      if (c) PQfinish(c);
      return absl::UnavailableError(absl::StrCat("ledger: cannot connect to PostgreSQL: ", why));
    }
    pool.push_back(c);
  }
  std::move(close_all).Cancel();
  std::unique_ptr<PostgresLedger> ledger(new PostgresLedger(options, pool));
  Conn first(ledger->all_[0].get());
  LOOM_RETURN_IF_ERROR(first.Exec("SET client_min_messages = warning").status());
  if (!options.read_only) {
    LOOM_RETURN_IF_ERROR(ledger->Migrate(first));
  } else {
    LOOM_ASSIGN_OR_RETURN(int version, ledger->SchemaVersion());
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ledger schema version ", version, " is newer than this build (", kSchemaVersion, ")"));
    }
  }
  return ledger;
}

absl::Status PostgresLedger::Migrate(Conn& c) {
  LOOM_RETURN_IF_ERROR(c.Exec("SELECT pg_advisory_lock($1)", {kMigrationLock}).status());
  auto unlock = absl::MakeCleanup(
      [&] { (void)c.Exec("SELECT pg_advisory_unlock($1)", {kMigrationLock}); });
  LOOM_RETURN_IF_ERROR(
      c.Exec("CREATE TABLE IF NOT EXISTS loom_schema(version INTEGER NOT NULL)").status());
  LOOM_ASSIGN_OR_RETURN(int64_t current, c.Int("SELECT COALESCE(MAX(version), 0) FROM loom_schema"));
  if (current > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("ledger schema version ", current,
                                                      " is newer than this build (",
                                                      kSchemaVersion, "); upgrade Loom"));
  }
  for (int64_t v = current; v < kSchemaVersion; ++v) {
    LOOM_RETURN_IF_ERROR(c.Exec("BEGIN").status());
    absl::Status step = c.Script(kMigrations[v]);
    if (step.ok()) step = c.Exec("DELETE FROM loom_schema").status();
    if (step.ok()) step = c.Exec("INSERT INTO loom_schema(version) VALUES($1)", {v + 1}).status();
    if (step.ok()) step = c.Exec("COMMIT").status();
    if (!step.ok()) {
      (void)c.Exec("ROLLBACK");
      return step;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PostgresLedger::SchemaVersion() {
  int64_t version = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(int64_t exists,
                          c.Int("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'loom_schema'"));
    if (exists == 0) return absl::OkStatus();
    LOOM_ASSIGN_OR_RETURN(version, c.Int("SELECT COALESCE(MAX(version), 0) FROM loom_schema"));
    return absl::OkStatus();
  }));
  return static_cast<int>(version);
}

bool PostgresLedger::Known(const std::string& account) {
  absl::MutexLock lock(&known_mu_);
  return known_.count(account) > 0;
}

void PostgresLedger::Remember(const std::vector<std::string>& accounts) {
  absl::MutexLock lock(&known_mu_);
  known_.insert(accounts.begin(), accounts.end());
}

absl::Status PostgresLedger::WithConn(absl::FunctionRef<absl::Status(Conn&)> fn) {
  Session* session = nullptr;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::vector<Session*>* idle) { return !idle->empty(); }, &idle_));
    session = idle_.back();
    idle_.pop_back();
  }
  auto give_back = absl::MakeCleanup([&] {
    absl::MutexLock lock(&mu_);
    idle_.push_back(session);
  });
  PGconn* raw = session->conn;
  // A connection the server closed while it sat in the pool (a restart, a terminated backend,
  // an idle timeout) has the goodbye and the EOF waiting on its socket: reading them costs no
  // round trip, and a fresh connection is made before any statement is lost on it.
  if (PQstatus(raw) == CONNECTION_OK && PQconsumeInput(raw) == 1) {
    while (PGresult* stale = PQgetResult(raw)) PQclear(stale);
  }
  if (PQstatus(raw) != CONNECTION_OK || session->closing) {
    PQreset(raw);
    session->prepared.clear();  // a new server session has none
    session->closing = false;
  }
  if (PQstatus(raw) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat("ledger: PostgreSQL connection lost: ",
                                               PQerrorMessage(raw)));
  }
  Conn conn(session);
  absl::Status s = fn(conn);
  if (s.ok()) s = conn.Pipeline({});  // whatever is still deferred
  return s;
}

absl::Status PostgresLedger::Transact(absl::FunctionRef<absl::Status(Conn&)> fn) {
  constexpr int kAttempts = 4;
  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    last = WithConn([&](Conn& c) -> absl::Status {
      c.Defer({"BEGIN", {}});  // travels with the transaction's first statement
      absl::Status s = fn(c);
      if (s.ok() && !c.committed()) s = c.Exec("COMMIT").status();
      if (!s.ok()) {
        c.DropDeferred();
        if (c.sent()) (void)c.Exec("ROLLBACK");
      }
      return s;
    });
    if (!Retryable(last)) return last;
  }
  return last;
}

// ---- Money ----

int64_t PostgresLedger::FeeFor(int64_t credits_micro) const {
  return ledger_rules::Fee(options_.fee_bps, credits_micro);
}

absl::Status PostgresLedger::Reserve(const std::string& request_id, const std::string& account,
                                     int64_t amount_micro, absl::Duration ttl) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckReservation(request_id, account, amount_micro));
  // On every request's path: a client already known costs no account insert.
  const bool known = Known(account);
  absl::Status reserved = Transact([&](Conn& c) -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    if (!known) LOOM_RETURN_IF_ERROR(EnsureAccount(c, account, now_ms));
    // The client's row first: every reservation and settlement of this client is serialised
    // from here, on every coordinator. Under the lock, in one round trip with BEGIN: what is
    // available, whether the request was settled already, whether it is running.
    Lock(c, account);
    LOOM_ASSIGN_OR_RETURN(
        Result q,
        c.Exec("SELECT (SELECT balance_micro FROM balances WHERE account_id = $1), "
               "(SELECT COALESCE(SUM(amount_micro), 0) FROM reservations WHERE account_id = $1 AND "
               "expires_at_ms > $2 AND request_id <> $3), "
               "(SELECT id FROM transactions WHERE reference = $4), "
               "(SELECT COUNT(*) FROM reservations WHERE request_id = $3 AND expires_at_ms > $2)",
               {account, now_ms, request_id, absl::StrCat("settle:", request_id)}));
    const int64_t available = q.Int(0, 0) - q.Int(0, 1);
    if (const int64_t settled = q.Int(0, 2); settled != 0) {
      return absl::AlreadyExistsError(absl::StrCat("request ", request_id,
                                                   " was already served and settled "
                                                   "(transaction ", settled, ")"));
    }
    if (q.Int(0, 3) > 0) {
      return absl::AbortedError(
          absl::StrCat("request ", request_id,
                       " is in progress; send it again once it has finished to get its answer"));
    }
    if (available < amount_micro) {
      return ledger_rules::InsufficientCredits(absl::StrCat(
          "insufficient credits: ", account, " has ", FormatCredits(available),
          " available and the request may cost up to ", FormatCredits(amount_micro)));
    }
    return c.Commit({{"INSERT INTO reservations(request_id, account_id, amount_micro, "
                      "created_at_ms, expires_at_ms, holder) VALUES($1, $2, $3, $4, $5, $6) "
                      "ON CONFLICT (request_id) DO UPDATE SET account_id = excluded.account_id, "
                      "amount_micro = excluded.amount_micro, "
                      "created_at_ms = excluded.created_at_ms, "
                      "expires_at_ms = excluded.expires_at_ms, holder = excluded.holder",
                      {request_id, account, amount_micro, now_ms,
                       now_ms + absl::ToInt64Milliseconds(ttl), options_.holder}}});
  });
  if (reserved.ok()) Remember({account});
  return reserved;
}

absl::Status PostgresLedger::Release(const std::string& request_id) {
  return WithConn([&](Conn& c) {
    return c.Exec("DELETE FROM reservations WHERE request_id = $1", {request_id}).status();
  });
}

absl::StatusOr<int64_t> PostgresLedger::ReleaseOrphans() {
  int64_t released = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result r,
                          c.Exec("DELETE FROM reservations WHERE holder = $1", {options_.holder}));
    released = r.affected();
    return absl::OkStatus();
  }));
  return released;
}

absl::StatusOr<int64_t> PostgresLedger::Available(const std::string& account) {
  int64_t available = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(available, AvailableOf(c, account, "", absl::ToUnixMillis(clock_->Now()),
                                                 false));
    return absl::OkStatus();
  }));
  return available;
}

absl::StatusOr<int64_t> PostgresLedger::Balance(const std::string& account) {
  int64_t balance = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        balance,
        HasBalanceRow(account)
            ? c.Int("SELECT balance_micro FROM balances WHERE account_id = $1", {account})
            : c.Int(kDerivedBalance, {account}));
    return absl::OkStatus();
  }));
  return balance;
}

absl::StatusOr<Settlement> PostgresLedger::Settle(const SettlementRequest& request) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckSettlement(request));
  const std::string reference = absl::StrCat("settle:", request.request_id);
  const std::string digest = RecordsDigest(request.records);
  int64_t total = 0;
  std::map<std::string, int64_t> by_provider;
  for (const auto& r : request.records) {
    total += r.credits_micro();
    by_provider[ProviderAccount(r.provider_id())] += r.credits_micro();
  }
  std::vector<std::string> accounts = {request.client_account};
  for (const auto& [account, amount] : by_provider) accounts.push_back(account);
  Settlement out;
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    for (const std::string& account : accounts) {
      if (!Known(account)) LOOM_RETURN_IF_ERROR(EnsureAccount(c, account, now_ms));
    }
    // The client's row first (the lock order); under it, its balance, its live holds and
    // whether the request was settled already. With BEGIN: one round trip.
    Lock(c, request.client_account);
    LOOM_ASSIGN_OR_RETURN(
        Result held,
        c.Exec("SELECT b.balance_micro, (SELECT COALESCE(SUM(r.amount_micro), 0) FROM reservations "
               "r WHERE r.account_id = $1 AND r.expires_at_ms > $2 AND r.request_id <> $3), t.id, "
               "t.amount_micro, t.records_digest FROM balances b LEFT JOIN transactions t ON "
               "t.reference = $4 WHERE b.account_id = $1",
               {request.client_account, now_ms, request.request_id, reference}));
    if (held.rows() != 1) return absl::InternalError("ledger: the client's balance row is missing");
    const int64_t available = held.Int(0, 0) - held.Int(0, 1);
    if (!held.Text(0, 2).empty()) {
      if (held.Text(0, 4) != digest) {
        return absl::FailedPreconditionError(absl::StrCat(
            "request ", request.request_id, " was already settled with different records "
            "(transaction ", held.Text(0, 2), ", ", held.Text(0, 3), " micro-credits)"));
      }
      out = Settlement{held.Text(0, 2), held.Int(0, 3), 0, true};
      return absl::OkStatus();
    }
    const int64_t fee = FeeFor(total);
    const int64_t charge = total + fee;
    if (available < charge) {
      return ledger_rules::InsufficientCredits(absl::StrCat(
          "insufficient credits: ", request.client_account, " has ", FormatCredits(available),
          " available and request ", request.request_id, " costs ", FormatCredits(charge)));
    }
    Entries entries = {{request.client_account, -charge}};
    for (const auto& [account, amount] : by_provider) entries.emplace_back(account, amount);
    if (fee > 0) entries.emplace_back("fee", fee);
    std::vector<Conn::Statement> writes;
    LOOM_ASSIGN_OR_RETURN(int64_t id, Append(c, options_, now_ms, "settle", reference, charge,
                                             digest, entries, &writes));
    if (!request.records.empty()) {
      std::string sql =
          "INSERT INTO contributions(request_id, txn_id, created_at_ms, sub_task_id, attempt, "
          "device_id, provider_id, model, role, token_count, weight, credits_micro, category, "
          "in_answer) VALUES";
      std::vector<Param> params = {request.request_id, id, now_ms};
      constexpr int kPerRecord = 11;
      for (size_t i = 0; i < request.records.size(); ++i) {
        const int b = 4 + kPerRecord * static_cast<int>(i);
        absl::StrAppend(&sql, i ? "," : "", "($1, $2, $3");
        for (int k = 0; k < kPerRecord; ++k) absl::StrAppend(&sql, ", $", b + k);
        absl::StrAppend(&sql, ")");
        const v1::ContributionRecord& r = request.records[i];
        for (Param p : {Param(r.sub_task_id()), Param(int64_t{r.attempt()}), Param(r.device_id()),
                        Param(r.provider_id()), Param(r.model()), Param(int64_t{r.role()}),
                        Param(r.token_count()), Param(r.weight()), Param(r.credits_micro()),
                        Param(int64_t{r.category()}), Param(r.in_answer() ? "true" : "false")}) {
          params.push_back(std::move(p));
        }
      }
      writes.push_back({sql, params});
    }
    writes.push_back({"DELETE FROM reservations WHERE request_id = $1", {request.request_id}});
    const int64_t retention_ms = absl::ToInt64Milliseconds(options_.answer_retention);
    if (!request.answer.empty() && retention_ms > 0) {
      writes.push_back({"INSERT INTO answers(request_id, account_id, txn_id, response, created_at_ms) "
                        "VALUES($1, $2, $3, $4, $5) ON CONFLICT (request_id) DO UPDATE SET "
                        "account_id = excluded.account_id, txn_id = excluded.txn_id, "
                        "response = excluded.response, created_at_ms = excluded.created_at_ms",
                        {request.request_id, request.client_account, id,
                         Param::Bytes(request.answer), now_ms}});
    }
    LOOM_RETURN_IF_ERROR(c.Commit(std::move(writes)));
    out = Settlement{absl::StrCat(id), charge, fee, false};
    return absl::OkStatus();
  }));
  Remember(accounts);
  // Answers past retention go as settlements pass, at most once a minute (an index range
  // delete; outside the settlement, which must not wait on it).
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  int64_t last = last_prune_ms_.load();
  if (now_ms - last >= 60'000 && last_prune_ms_.compare_exchange_strong(last, now_ms)) {
    (void)WithConn([&](Conn& c) {
      return c.Exec("DELETE FROM answers WHERE created_at_ms < $1",
                    {absl::ToUnixMillis(clock_->Now()) -
                     absl::ToInt64Milliseconds(options_.answer_retention)})
          .status();
    });
  }
  return out;
}

absl::StatusOr<std::string> PostgresLedger::Transfer(const std::string& kind, const std::string& from,
                                                     const std::string& to, int64_t amount,
                                                     const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckTransfer(kind, amount, reference));
  const std::string ref = absl::StrCat(kind, ":", reference);
  std::string id;
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    LOOM_RETURN_IF_ERROR(EnsureAccount(c, from, now_ms));
    LOOM_RETURN_IF_ERROR(EnsureAccount(c, to, now_ms));
    // The paying account's row first (the lock order).
    LOOM_ASSIGN_OR_RETURN(int64_t available, AvailableOf(c, from, "", now_ms, true));
    LOOM_ASSIGN_OR_RETURN(Result same,
                          c.Exec("SELECT t.id FROM transactions t JOIN entries e ON e.txn_id = t.id "
                                 "WHERE t.reference = $1 AND t.kind = $2 AND t.amount_micro = $3 "
                                 "AND e.account_id = $4 AND e.amount_micro = $3",
                                 {ref, kind, amount, to}));
    if (same.rows() > 0) {
      id = same.Text(0, 0);  // the same transfer again: idempotent
      return absl::OkStatus();
    }
    LOOM_ASSIGN_OR_RETURN(int64_t taken,
                          c.Int("SELECT id FROM transactions WHERE reference = $1", {ref}));
    if (taken != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "reference '", ref, "' was already used for a different transaction (", taken, ")"));
    }
    if (kind == "payout" && available < amount) {
      return absl::FailedPreconditionError(absl::StrCat(
          "insufficient balance: ", from, " has ", FormatCredits(available), ", payout of ",
          FormatCredits(amount), " refused"));
    }
    std::vector<Conn::Statement> writes;
    LOOM_ASSIGN_OR_RETURN(int64_t appended, Append(c, options_, now_ms, kind, ref, amount, "",
                                                   {{from, -amount}, {to, amount}}, &writes));
    LOOM_RETURN_IF_ERROR(c.Commit(std::move(writes)));
    id = absl::StrCat(appended);
    return absl::OkStatus();
  }));
  return id;
}

absl::StatusOr<std::string> PostgresLedger::Grant(const std::string& account, int64_t amount_micro,
                                                  const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckGrantAccount(account));
  return Transfer("grant", "mint", account, amount_micro, reference);
}

absl::StatusOr<std::string> PostgresLedger::Payout(const std::string& provider_id,
                                                   int64_t amount_micro,
                                                   const std::string& reference) {
  if (provider_id.empty()) return absl::InvalidArgumentError("payout: empty provider id");
  return Transfer("payout", ProviderAccount(provider_id), "payout", amount_micro, reference);
}

// ---- Reads ----

absl::StatusOr<StoredAnswer> PostgresLedger::Answer(const std::string& request_id) {
  StoredAnswer out;
  bool found = false;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result q, c.Exec("SELECT a.account_id, a.response, a.txn_id, t.amount_micro FROM answers a "
                         "JOIN transactions t ON t.id = a.txn_id WHERE a.request_id = $1 AND "
                         "a.created_at_ms >= $2",
                         {request_id, absl::ToUnixMillis(clock_->Now()) -
                                          absl::ToInt64Milliseconds(options_.answer_retention)}));
    if (q.rows() == 0) return absl::OkStatus();
    found = true;
    out = StoredAnswer{q.Text(0, 0), q.Bytes(0, 1), q.Text(0, 2), q.Int(0, 3)};
    return absl::OkStatus();
  }));
  if (!found) return absl::NotFoundError(absl::StrCat("no answer is kept for request ", request_id));
  return out;
}

absl::StatusOr<std::vector<v1::ContributionRecord>> PostgresLedger::ListRecords(
    const RecordFilter& filter) {
  std::vector<v1::ContributionRecord> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result q, c.Exec(absl::StrCat("SELECT ", kRecordColumns,
                                      " FROM contributions WHERE ($1::text = '' OR request_id = $1) AND "
                                      "($2::text = '' OR provider_id = $2) ORDER BY created_at_ms, "
                                      "request_id, sub_task_id, attempt LIMIT $3"),
                         {filter.request_id, filter.provider_id, filter.limit}));
    for (int i = 0; i < q.rows(); ++i) out.push_back(RecordFromRow(q, i));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<AccountInfo>> PostgresLedger::Accounts() {
  std::vector<AccountInfo> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result q,
        c.Exec("SELECT a.id, a.kind, CASE WHEN a.kind IN ('provider', 'fee') THEN (SELECT "
               "COALESCE(SUM(e.amount_micro), 0) FROM entries e WHERE e.account_id = a.id) ELSE "
               "COALESCE((SELECT b.balance_micro FROM balances b WHERE b.account_id = a.id), 0) "
               "END, (SELECT "
               "COALESCE(SUM(r.amount_micro), 0) FROM reservations r WHERE r.account_id = a.id AND "
               "r.expires_at_ms > $1) FROM accounts a ORDER BY a.kind, a.id",
               {absl::ToUnixMillis(clock_->Now())}));
    for (int i = 0; i < q.rows(); ++i) {
      out.push_back({q.Text(i, 0), q.Text(i, 1), q.Int(i, 2), q.Int(i, 3)});
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<TransactionInfo>> PostgresLedger::RecentTransactions(int limit) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckListLimit(limit));
  std::vector<TransactionInfo> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result q, c.Exec("SELECT id, kind, reference, amount_micro, created_at_ms "
                                           "FROM transactions ORDER BY id DESC LIMIT $1",
                                           {int64_t{limit}}));
    for (int i = 0; i < q.rows(); ++i) {
      out.push_back({q.Int(i, 0), q.Text(i, 1), q.Text(i, 2), q.Int(i, 3), q.Int(i, 4)});
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<PayoutRow>> PostgresLedger::Payouts(const PayoutFilter& filter) {
  std::map<std::string, PayoutRow> rows;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result earned,
        c.Exec("SELECT provider_id, SUM(credits_micro), SUM(token_count), COUNT(DISTINCT "
               "request_id), COUNT(DISTINCT device_id) FROM contributions WHERE created_at_ms >= $1 "
               "AND created_at_ms < $2 AND ($3::text = '' OR provider_id = $3) GROUP BY provider_id",
               {filter.since_ms, filter.until_ms, filter.provider_id}));
    for (int i = 0; i < earned.rows(); ++i) {
      PayoutRow& r = rows[earned.Text(i, 0)];
      r.provider_id = earned.Text(i, 0);
      r.earned_micro = earned.Int(i, 1);
      r.tokens = earned.Int(i, 2);
      r.requests = earned.Int(i, 3);
      r.devices = earned.Int(i, 4);
    }
    LOOM_ASSIGN_OR_RETURN(
        Result paid,
        c.Exec("SELECT substr(e.account_id, 10), -SUM(e.amount_micro) FROM entries e JOIN "
               "transactions t ON t.id = e.txn_id WHERE t.kind = 'payout' AND e.account_id LIKE "
               "'provider:%' AND t.created_at_ms >= $1 AND t.created_at_ms < $2 AND ($3::text = '' OR "
               "e.account_id = 'provider:' || $3::text) GROUP BY e.account_id",
               {filter.since_ms, filter.until_ms, filter.provider_id}));
    for (int i = 0; i < paid.rows(); ++i) {
      PayoutRow& r = rows[paid.Text(i, 0)];
      r.provider_id = paid.Text(i, 0);
      r.paid_out_micro = paid.Int(i, 1);
    }
    for (auto& [id, r] : rows) {
      LOOM_ASSIGN_OR_RETURN(r.unpaid_micro,
                            c.Int(kDerivedBalance, {ProviderAccount(id)}));
    }
    return absl::OkStatus();
  }));
  std::vector<PayoutRow> out;
  for (auto& [id, r] : rows) out.push_back(r);
  return out;
}

absl::StatusOr<VerifyReport> PostgresLedger::Verify() {
  VerifyReport report;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    auto fail = [&](int64_t id, std::string problem) {
      report.ok = false;
      report.first_bad_transaction = id;
      report.problem = std::move(problem);
      return absl::OkStatus();
    };
    // One snapshot for the whole audit.
    LOOM_RETURN_IF_ERROR(c.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
    auto end = absl::MakeCleanup([&] { (void)c.Exec("COMMIT"); });
    LOOM_ASSIGN_OR_RETURN(Result chains, c.Exec("SELECT chain, seq, head FROM chains ORDER BY chain"));
    std::map<std::string, std::pair<int64_t, std::string>> heads;
    for (int i = 0; i < chains.rows(); ++i) {
      heads[chains.Text(i, 0)] = {chains.Int(i, 1), chains.Text(i, 2)};
    }
    LOOM_ASSIGN_OR_RETURN(
        Result txns,
        c.Exec("SELECT id, kind, reference, amount_micro, created_at_ms, records_digest, chain, "
               "chain_seq, prev_hash, hash FROM transactions ORDER BY chain, chain_seq"));
    LOOM_ASSIGN_OR_RETURN(Result all_entries,
                          c.Exec("SELECT txn_id, account_id, amount_micro FROM entries"));
    std::map<int64_t, Entries> entries;
    for (int i = 0; i < all_entries.rows(); ++i) {
      entries[all_entries.Int(i, 0)].emplace_back(all_entries.Text(i, 1), all_entries.Int(i, 2));
    }
    std::string chain, prev;
    int64_t expected_seq = 0;
    for (int i = 0; i < txns.rows(); ++i) {
      const int64_t id = txns.Int(i, 0);
      ++report.transactions;
      if (txns.Text(i, 6) != chain) {
        if (!chain.empty() && (heads[chain].first != expected_seq || heads[chain].second != prev)) {
          return fail(id, absl::StrCat("chain ", chain, " ends at ", expected_seq,
                                       " but its head says ", heads[chain].first));
        }
        chain = txns.Text(i, 6);
        prev.clear();
        expected_seq = 0;
      }
      ++expected_seq;
      if (txns.Int(i, 7) != expected_seq) {
        return fail(id, absl::StrCat("chain ", chain, " skips from ", expected_seq - 1, " to ",
                                     txns.Int(i, 7), " (a transaction was deleted)"));
      }
      if (txns.Text(i, 8) != prev) {
        return fail(id, absl::StrCat("transaction ", id, " does not link to the one before it in ",
                                     chain));
      }
      const Entries& e = entries[id];
      int64_t sum = 0;
      for (const auto& [account, amount] : e) sum += amount;
      if (sum != 0) return fail(id, absl::StrCat("entries of transaction ", id, " sum to ", sum));
      const std::string hash = Sha256Hex(ChainCanonical(
          chain, expected_seq,
          TxnCanonical(kChainVersion, prev, id, txns.Text(i, 1), txns.Text(i, 2), txns.Int(i, 3),
                       txns.Int(i, 4), txns.Text(i, 5), e)));
      if (hash != txns.Text(i, 9)) {
        return fail(id, absl::StrCat("transaction ", id, " does not match its hash (edited)"));
      }
      if (txns.Text(i, 1) == "settle") {
        LOOM_ASSIGN_OR_RETURN(Result recs, c.Exec(absl::StrCat("SELECT ", kRecordColumns,
                                                               " FROM contributions WHERE txn_id = $1"),
                                                  {id}));
        std::vector<v1::ContributionRecord> records;
        int64_t credits = 0;
        for (int r = 0; r < recs.rows(); ++r) {
          records.push_back(RecordFromRow(recs, r));
          credits += records.back().credits_micro();
        }
        if (RecordsDigest(records) != txns.Text(i, 5)) {
          return fail(id, absl::StrCat("the records of settlement ", id, " do not match its digest"));
        }
        int64_t fee = 0;
        for (const auto& [account, amount] : e) {
          if (account == "fee") fee = amount;
        }
        if (credits + fee != txns.Int(i, 3)) {
          return fail(id, absl::StrCat("records credit ", credits, " + fee ", fee,
                                       " but the settlement charged ", txns.Int(i, 3)));
        }
      }
      prev = txns.Text(i, 9);
    }
    if (!chain.empty() && (heads[chain].first != expected_seq || heads[chain].second != prev)) {
      return fail(0, absl::StrCat("chain ", chain, " ends at ", expected_seq,
                                  " but its head says ", heads[chain].first));
    }
    LOOM_ASSIGN_OR_RETURN(
        Result balances,
        c.Exec("SELECT b.account_id, b.balance_micro, COALESCE((SELECT SUM(e.amount_micro) FROM "
               "entries e WHERE e.account_id = b.account_id), 0) FROM balances b ORDER BY 1"));
    for (int i = 0; i < balances.rows(); ++i) {
      if (balances.Int(i, 1) != balances.Int(i, 2)) {
        return fail(0, absl::StrCat("balance of ", balances.Text(i, 0), " is ", balances.Int(i, 1),
                                    " but its entries sum to ", balances.Int(i, 2)));
      }
    }
    return absl::OkStatus();
  }));
  return report;
}

// ---- Import (loom-ledger migrate) ----

absl::Status PostgresLedger::Import(const LedgerCopy& copy) {
  return Transact([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(int64_t existing, c.Int("SELECT COUNT(*) FROM transactions"));
    if (existing > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the target ledger already holds ", existing, " transactions; migrate into an empty one"));
    }
    for (const auto& a : copy.accounts) {
      LOOM_RETURN_IF_ERROR(ledger_rules::CheckAccountId(a.id));
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO accounts(id, kind, created_at_ms) VALUES($1, $2, $3) "
                                  "ON CONFLICT (id) DO NOTHING",
                                  {a.id, a.kind, a.created_ms})
                               .status());
    }
    // One chain for the history, in the source's order; balances from the entries.
    const std::string chain = "migrated/0";
    std::string prev;
    int64_t seq = 0, max_id = 0;
    std::map<std::string, int64_t> balances;
    std::map<std::string, int64_t> txn_of_reference;
    for (const auto& t : copy.transactions) {
      ++seq;
      max_id = std::max(max_id, t.id);
      txn_of_reference[t.reference] = t.id;
      const std::string hash = Sha256Hex(ChainCanonical(
          chain, seq,
          TxnCanonical(kChainVersion, prev, t.id, t.kind, t.reference, t.amount_micro,
                       t.created_ms, t.records_digest, t.entries)));
      LOOM_RETURN_IF_ERROR(
          c.Exec("INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
                 "records_digest, chain, chain_seq, prev_hash, hash) "
                 "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                 {t.id, t.kind, t.reference, t.amount_micro, t.created_ms, t.records_digest, chain,
                  seq, prev, hash})
              .status());
      for (const auto& [account, amount] : t.entries) {
        LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO entries(txn_id, account_id, amount_micro) "
                                    "VALUES($1, $2, $3)",
                                    {t.id, account, amount})
                                 .status());
        balances[account] += amount;
      }
      prev = hash;
    }
    if (seq > 0) {
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO chains(chain, seq, head) VALUES($1, $2, $3)",
                                  {chain, seq, prev})
                               .status());
      LOOM_RETURN_IF_ERROR(
          c.Exec("SELECT setval(pg_get_serial_sequence('transactions', 'id'), $1)", {max_id}).status());
    }
    for (const auto& a : copy.accounts) {
      if (!HasBalanceRow(a.id)) continue;
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO balances(account_id, balance_micro) VALUES($1, $2) "
                                  "ON CONFLICT (account_id) DO UPDATE SET balance_micro = "
                                  "excluded.balance_micro",
                                  {a.id, balances[a.id]})
                               .status());
    }
    for (const v1::ContributionRecord& r : copy.records) {
      auto txn = txn_of_reference.find(absl::StrCat("settle:", r.request_id()));
      if (txn == txn_of_reference.end()) {
        return absl::DataLossError(absl::StrCat("record of request ", r.request_id(),
                                                " has no settlement in the source"));
      }
      LOOM_RETURN_IF_ERROR(
          c.Exec("INSERT INTO contributions(request_id, sub_task_id, attempt, txn_id, device_id, "
                 "provider_id, model, role, token_count, weight, credits_micro, created_at_ms, "
                 "category, in_answer) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                 "$13, $14)",
                 {r.request_id(), r.sub_task_id(), int64_t{r.attempt()}, txn->second, r.device_id(),
                  r.provider_id(), r.model(), int64_t{r.role()}, r.token_count(), r.weight(),
                  r.credits_micro(), r.created_unix_ms(), int64_t{r.category()},
                  r.in_answer() ? "true" : "false"})
              .status());
    }
    for (const auto& a : copy.answers) {
      LOOM_RETURN_IF_ERROR(
          c.Exec("INSERT INTO answers(request_id, account_id, txn_id, response, created_at_ms) "
                 "VALUES($1, $2, $3, $4, $5)",
                 {a.request_id, a.account, a.txn_id, Param::Bytes(a.response), a.created_ms})
              .status());
    }
    for (const auto& k : copy.keys) {
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO api_keys(id, client_account, secret_sha256, "
                                  "created_at_ms, revoked_at_ms) VALUES($1, $2, $3, $4, $5)",
                                  {k.id, k.account, k.secret_sha256, k.created_ms, k.revoked_ms})
                               .status());
    }
    for (const auto& v : copy.verdicts) {
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO feedback(request_id, account_id, rating, sub_task_id, "
                                  "created_at_ms) VALUES($1, $2, $3, $4, $5)",
                                  {v.request_id, v.account, v.rating, v.sub_task_id, v.created_ms})
                               .status());
    }
    return AddOutcomesIn(c, copy.outcomes, absl::ToUnixMillis(clock_->Now()));
  });
}

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

// ---- Feedback and outcomes ----

absl::StatusOr<std::vector<OutcomeDelta>> PostgresLedger::RecordFeedback(
    const FeedbackVerdict& verdict) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckVerdict(verdict));
  std::vector<OutcomeDelta> parts;
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    parts.clear();
    LOOM_ASSIGN_OR_RETURN(int64_t owned,
                          c.Int("SELECT COUNT(*) FROM transactions t JOIN entries e ON e.txn_id = "
                                "t.id WHERE t.reference = $1 AND e.account_id = $2",
                                {absl::StrCat("settle:", verdict.request_id), verdict.client_account}));
    if (owned == 0) {
      return absl::NotFoundError(absl::StrCat("no settled request ", verdict.request_id, " of ",
                                              verdict.client_account));
    }
    LOOM_ASSIGN_OR_RETURN(Result earlier,
                          c.Exec("SELECT rating FROM feedback WHERE request_id = $1 AND "
                                 "account_id = $2",
                                 {verdict.request_id, verdict.client_account}));
    if (earlier.rows() > 0) {
      return absl::AlreadyExistsError(absl::StrCat("request ", verdict.request_id,
                                                   " was already rated ", earlier.Text(0, 0)));
    }
    LOOM_ASSIGN_OR_RETURN(
        Result q,
        c.Exec("SELECT sub_task_id, model, category FROM contributions c WHERE request_id = $1 AND "
               "in_answer AND category <> 0 AND ($2::text = '' OR sub_task_id = $2) AND attempt = "
               "(SELECT MAX(attempt) FROM contributions d WHERE d.request_id = c.request_id AND "
               "d.sub_task_id = c.sub_task_id AND d.in_answer) ORDER BY sub_task_id",
               {verdict.request_id, verdict.sub_task_id}));
    for (int i = 0; i < q.rows(); ++i) {
      const int64_t category = q.Int(i, 2);
      if (!v1::TaskCategory_IsValid(static_cast<int>(category))) continue;
      parts.push_back({q.Text(i, 1), static_cast<v1::TaskCategory>(category), 0, 0});
    }
    if (!verdict.sub_task_id.empty() && parts.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("request ", verdict.request_id,
                                                     " has no sub-task ", verdict.sub_task_id,
                                                     " in its answer"));
    }
    ledger_rules::ShareVerdict(verdict.good, &parts);
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO feedback(request_id, account_id, rating, sub_task_id, "
                                "created_at_ms) VALUES($1, $2, $3, $4, $5)",
                                {verdict.request_id, verdict.client_account,
                                 verdict.good ? "good" : "bad", verdict.sub_task_id, now_ms})
                             .status());
    return AddOutcomesIn(c, parts, now_ms);
  }));
  return parts;
}

absl::Status PostgresLedger::AddOutcomes(const std::vector<OutcomeDelta>& deltas) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckOutcomes(deltas));
  if (deltas.empty()) return absl::OkStatus();
  return Transact([&](Conn& c) -> absl::Status {
    return AddOutcomesIn(c, deltas, absl::ToUnixMillis(clock_->Now()));
  });
}

absl::StatusOr<std::vector<OutcomeDelta>> PostgresLedger::Outcomes() {
  std::vector<OutcomeDelta> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result q, c.Exec("SELECT model, category, good, bad FROM outcomes "
                                           "ORDER BY model, category"));
    for (int i = 0; i < q.rows(); ++i) {
      const int64_t category = q.Int(i, 1);
      if (!v1::TaskCategory_IsValid(static_cast<int>(category))) continue;
      out.push_back({q.Text(i, 0), static_cast<v1::TaskCategory>(category), q.Double(i, 2),
                     q.Double(i, 3)});
    }
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace loom
