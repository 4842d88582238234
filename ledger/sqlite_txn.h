// File: ledger/sqlite_txn.h
// One write of the SQLite ledger, inside the group commit's transaction (a savepoint of its
// own). Only SqliteLedger's commit makes one, with the connection's lock held, so a write
// that takes a SqliteTxn& needs no lock annotation of its own: holding the object is the
// proof (the thread-safety analysis checks where it is made).
//
//   absl::Status s = Write([&](SqliteTxn& txn) -> absl::Status {
//     LOOM_RETURN_IF_ERROR(txn.EnsureAccount(account));
//     return txn.Prepare("DELETE FROM reservations WHERE request_id = ?1").Bind(1, id).Run();
//   });
//
// Not thread-safe; lives for one write, on the thread that leads the batch. Internal to
// ledger/.
#ifndef LOOM_LEDGER_SQLITE_TXN_H_
#define LOOM_LEDGER_SQLITE_TXN_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "ledger/ledger_hash.h"
#include "ledger/sqlite_statement.h"

struct sqlite3;

namespace loom {

// The SQLite ledger's connection and what its writes remember between transactions. Guarded
// by the ledger's connection mutex.
struct SqliteConn {
  sqlite3* db = nullptr;
  sqlite::StatementCache cache;
  // Accounts known to exist (accounts are never deleted, so this never goes stale).
  std::set<std::string> known_accounts;
  int64_t last_answer_sweep_ms = 0;  // answers past retention deleted
  int64_t last_expiry_sweep_ms = 0;  // expired reservations deleted
};

// The account's balance minus its live reservations at `now_ms`, except request `except`'s.
// Reads only; the caller holds the connection.
absl::StatusOr<int64_t> AvailableBalance(SqliteConn& conn, int64_t now_ms,
                                         const std::string& account, const std::string& except);

class SqliteTxn {
 public:
  SqliteTxn(SqliteConn& conn, Clock* clock) : conn_(conn), clock_(clock) {}
  SqliteTxn(const SqliteTxn&) = delete;
  SqliteTxn& operator=(const SqliteTxn&) = delete;

  // A statement kept prepared for the connection (hot or repeated SQL).
  sqlite::Statement Prepare(absl::string_view sql) { return {conn_.db, sql, &conn_.cache}; }
  // A statement prepared for this use only (rare SQL).
  sqlite::Statement PrepareOnce(absl::string_view sql) { return {conn_.db, sql}; }
  // Rows changed by the last statement.
  int Changes() const;
  int64_t NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

  // Creates the account (and its zero balance) unless it exists; INVALID_ARGUMENT for a
  // malformed id.
  absl::Status EnsureAccount(const std::string& id);
  // The account's balance minus its live reservations, except request `except`'s.
  absl::StatusOr<int64_t> Available(const std::string& account, const std::string& except) {
    return AvailableBalance(conn_, NowMs(), account, except);
  }
  // Appends a transaction with its entries (which must sum to zero) and its place in the hash
  // chain, and moves the balances; returns its id. OUT_OF_RANGE when a balance would pass
  // LedgerAdmin::kMaxBalanceMicro.
  absl::StatusOr<int64_t> Append(const std::string& kind, const std::string& reference,
                                 int64_t amount, const std::string& digest,
                                 const Entries& entries);
  // True when the sweep last done at *last_ms (a field of the connection) is `period_ms` old;
  // then it is marked done now.
  bool SweepDue(int64_t SqliteConn::*last_ms, int64_t now_ms, int64_t period_ms) {
    if (now_ms - conn_.*last_ms < period_ms) return false;
    conn_.*last_ms = now_ms;
    return true;
  }

  // Accounts this write created: known to exist once its transaction commits.
  const std::vector<std::string>& created_accounts() const { return created_; }

 private:
  SqliteConn& conn_;
  Clock* const clock_;
  std::vector<std::string> created_;
};

}  // namespace loom

#endif  // LOOM_LEDGER_SQLITE_TXN_H_
