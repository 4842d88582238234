// File: ledger/sqlite_statement.h
// The SQLite edge of the SQLite ledger: the one converter from SQLite result codes to Status,
// prepared statements (cached per connection or one-off), and the query loops every read
// shares.
//
//   sqlite::Statement q(db, "SELECT id, kind FROM accounts WHERE kind = ?1", &cache);
//   q.Bind(1, "client");
//   LOOM_ASSIGN_OR_RETURN(auto rows, sqlite::Collect<AccountInfo>(q, [](const sqlite::Statement& r) {
//     return AccountInfo{r.Text(0), r.Text(1)};
//   }));
//
// Not thread-safe: a connection and its statements are used by one thread at a time (the
// ledger's mutex). Internal to ledger/.
#ifndef LOOM_LEDGER_SQLITE_STATEMENT_H_
#define LOOM_LEDGER_SQLITE_STATEMENT_H_

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <sqlite3.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace loom::sqlite {

// The one converter from SQLite result codes to Status. Busy/locked map to ABORTED (retry the
// transaction); constraint failures to FAILED_PRECONDITION; open, I/O, full and read-only to
// UNAVAILABLE; the rest to INTERNAL. OK, DONE and ROW are OK. `db` (may be null) supplies the
// message.
absl::Status ToStatus(sqlite3* db, int rc, absl::string_view what);

// Prepared statements kept for the life of the connection, by SQL text. Finalizes them on
// destruction, which must come before the connection is closed.
class StatementCache {
 public:
  StatementCache() = default;
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;
  ~StatementCache() { Clear(); }
  // Finalizes every statement.
  void Clear();
  // The statement for `sql`, prepared on first use; sets *rc to the preparation's code.
  sqlite3_stmt* Get(sqlite3* db, absl::string_view sql, int* rc);

 private:
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

// A prepared statement: finalized on destruction, or reset and returned to its cache. A
// preparation error is reported by status() and by the first Step.
class Statement {
 public:
  Statement(sqlite3* db, absl::string_view sql, StatementCache* cache = nullptr);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const { return ToStatus(db_, rc_, "prepare"); }
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
  Statement& BindBlob(int i, absl::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // Steps once: true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows (or whose rows are not wanted).
  absl::Status Run() { return Step().status(); }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  int columns() const { return sqlite3_column_count(stmt_); }
  // Every byte of the value, NULs included (the length comes from SQLite, not strlen).
  std::string Text(int col) const;
  std::string Blob(int col) const;

 private:
  sqlite3* db_;
  bool cached_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// Runs `sql` (any number of statements, no rows wanted) through sqlite3_exec.
absl::Status Exec(sqlite3* db, absl::string_view sql);

// Calls each(q) for every row of `q`, in order; stops at the first step error, or at the first
// error `each` returns when it returns a Status.
template <typename F>
absl::Status ForEachRow(Statement& q, F&& each) {
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return absl::OkStatus();
    if constexpr (std::is_same_v<std::invoke_result_t<F&, Statement&>, absl::Status>) {
      LOOM_RETURN_IF_ERROR(each(q));
    } else {
      each(q);
    }
  }
}

// Every row of `q`, each mapped by row(q) to a T.
template <typename T, typename F>
absl::StatusOr<std::vector<T>> Collect(Statement& q, F&& row) {
  std::vector<T> out;
  LOOM_RETURN_IF_ERROR(ForEachRow(q, [&](Statement& r) { out.push_back(row(r)); }));
  return out;
}

}  // namespace loom::sqlite

#endif  // LOOM_LEDGER_SQLITE_STATEMENT_H_
