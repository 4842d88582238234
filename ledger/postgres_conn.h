// File: ledger/postgres_conn.h
// The PostgreSQL ledger's edge: results and parameters, a pooled connection (Session) and the
// statements on it (Conn: prepared once per connection, deferred statements pipelined with
// the next one), and the row-level helpers every part of the engine shares (accounts, row
// locks, available balance, the hash chain's append, record rows).
//
// Not thread-safe: a Conn is used by one call at a time. Internal to ledger/.
#ifndef LOOM_LEDGER_POSTGRES_CONN_H_
#define LOOM_LEDGER_POSTGRES_CONN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <libpq-fe.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/postgres_ledger.h"
#include "ledger/pricing.h"

namespace loom {
namespace pg {

int64_t ToInt(const char* text);   // 0 for null or not a number
double ToDouble(const char* text);

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
inline bool Retryable(const absl::Status& s) {
  return s.GetPayload("loom.dev/pg-retry").has_value();
}


// Accounts a settlement debits keep a balance row (clients: locked by every reservation and
// settlement of theirs), and so do mint and payout (moved by grants and payouts only). Those a
// settlement credits -- providers and the fee -- would be rows every settlement paying them
// waits on: their balance is the sum of their entries instead (credits only ever add, so a
// payout racing a credit sees at most too little).
bool HasBalanceRow(const std::string& account);
inline constexpr char kDerivedBalance[] =
    "SELECT COALESCE(SUM(amount_micro), 0) FROM entries WHERE account_id = $1";

}  // namespace pg


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
  using Result = pg::Result;
  using Param = pg::Param;
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
    InFlight pipeline;
    absl::Status first = SendPipeline(statements, &pipeline);
    PQpipelineSync(c_);
    absl::Status read = ReadPipeline(statements, pipeline, last);
    if (first.ok()) first = read;
    if (!first.ok()) ForgetPreparedOn(first);
    PQexitPipelineMode(c_);
    return first;
  }

  // What a pipeline sent, in order: each statement, preceded by its PREPARE the first time.
  struct InFlight {
    struct Sent {
      size_t statement;
      std::string prepare;  // the SQL a PREPARE result confirms; empty for a statement
    };
    std::vector<Sent> sent;
    absl::flat_hash_map<std::string, std::string> preparing;  // SQL -> name, in this pipeline
  };

  // Queues every statement (and the PREPAREs they need); stops at the first send that fails.
  absl::Status SendPipeline(const std::vector<Statement>& statements, InFlight* p) {
    for (size_t i = 0; i < statements.size(); ++i) {
      const Statement& st = statements[i];
      const Values v(st.params);
      const int n = static_cast<int>(st.params.size());
      std::string name;
      if (auto it = p->preparing.find(st.sql); it != p->preparing.end()) {
        name = it->second;
      } else if (auto known = prepared_->find(st.sql); known != prepared_->end()) {
        name = known->second;
      } else if (Preparable(st)) {
        name = NewName();
        if (PQsendPrepare(c_, name.c_str(), st.sql.c_str(), n, nullptr) != 1) {
          return absl::UnavailableError(absl::StrCat("postgresql: ", PQerrorMessage(c_)));
        }
        p->preparing.emplace(st.sql, name);
        p->sent.push_back({i, st.sql});
      }
      const int ok =
          name.empty()
              ? PQsendQueryParams(c_, st.sql.c_str(), n, nullptr, v.values.data(),
                                  v.lengths.data(), v.formats.data(), 0)
              : PQsendQueryPrepared(c_, name.c_str(), n, v.values.data(), v.lengths.data(),
                                    v.formats.data(), 0);
      if (ok != 1) return absl::UnavailableError(absl::StrCat("postgresql: ", PQerrorMessage(c_)));
      p->sent.push_back({i, ""});
    }
    return absl::OkStatus();
  }

  // Reads every result, then its terminating null, then the sync; returns the first failure.
  // Two nulls in a row mean nothing more is coming (a broken connection).
  absl::Status ReadPipeline(const std::vector<Statement>& statements, const InFlight& p,
                            std::optional<Result>* last) {
    absl::Status first;
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
      const InFlight::Sent* what = at < p.sent.size() ? &p.sent[at] : nullptr;
      if (!checked.ok()) {
        if (first.ok()) first = checked.status();
      } else if (what && !what->prepare.empty()) {
        prepared_->emplace(what->prepare, p.preparing.at(what->prepare));
      } else if (last && what && what->statement + 1 == statements.size()) {
        last->emplace(*std::move(checked));
      }
      if (PQstatus(c_) != CONNECTION_OK) break;
    }
    return first;
  }

  PGconn* c_;
  absl::flat_hash_map<std::string, std::string>* prepared_;
  int64_t* names_;
  std::vector<Statement> deferred_;
  bool sent_ = false;
  bool committed_ = false;
};

namespace pg {

using Conn = PostgresLedger::Conn;

// Creates the account unless it exists, with its balance row when it keeps one (deferred: the
// inserts travel with the next statement). INVALID_ARGUMENT for a malformed id.
absl::Status EnsureAccount(Conn& c, const std::string& id, int64_t now_ms);
// Locks the row every move of `account` is serialised on, for the rest of the transaction
// (deferred): the balance row, or for an account whose balance is derived its account row.
void Lock(Conn& c, const std::string& account);
// Balance minus live reservations (but `except`'s); with `lock`, the balance row is locked
// for the rest of the transaction first.
absl::StatusOr<int64_t> AvailableOf(Conn& c, const std::string& account, const std::string& except,
                                    int64_t now_ms, bool lock);
// Which of a holder's chains a reference goes to (FNV-1a: the same in every process).
uint64_t ShardOf(absl::string_view reference, int shards);
absl::Status AddOutcomesIn(Conn& c, const std::vector<OutcomeDelta>& deltas, int64_t now_ms);
// What a transaction's hash covers on its chain: the chain, its place in it, the transaction.
std::string ChainCanonical(const std::string& chain, int64_t seq, const std::string& txn);
// Appends a transaction: moves the balances (the paying account's row is locked already),
// locks its chain's head, and queues its rows and the new head in `writes` (the caller sends
// them with its own, in one round trip). Returns its id.
absl::StatusOr<int64_t> Append(Conn& c, const PostgresLedgerOptions& options, int64_t now_ms,
                               const std::string& kind, const std::string& reference,
                               int64_t amount, const std::string& digest, Entries entries,
                               std::vector<Conn::Statement>* writes);

// The columns of a contribution row, in the order RecordFromRow reads them.
inline constexpr char kRecordColumns[] =
    "request_id, sub_task_id, attempt, device_id, provider_id, model, role, token_count, weight, "
    "credits_micro, created_at_ms, category, in_answer";
v1::ContributionRecord RecordFromRow(const Result& q, int row);

}  // namespace pg
}  // namespace loom

#endif  // LOOM_LEDGER_POSTGRES_CONN_H_
