// File: ledger/postgres_ledger.cc
// Opening the PostgreSQL ledger: the connection pool, migrations, transactions and their retries.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/ledger_rules.h"
#include "ledger/postgres_conn.h"
#include "ledger/postgres_schema.h"
#include "ledger/pricing.h"

namespace loom {

using pg::Retryable;
using pg::kMigrationLock;

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
    absl::Status step = c.Script(pg::Migrations()[v]);
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

}  // namespace loom
