#include "ledger/sqlite_statement.h"

#include "absl/strings/str_cat.h"

namespace loom::sqlite {

absl::Status ToStatus(sqlite3* db, int rc, absl::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
  std::string message =
      absl::StrCat("ledger: ", what, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
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

void StatementCache::Clear() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  cache_.clear();
}

sqlite3_stmt* StatementCache::Get(sqlite3* db, absl::string_view sql, int* rc) {
  auto it = cache_.find(sql);
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

Statement::Statement(sqlite3* db, absl::string_view sql, StatementCache* cache)
    : db_(db), cached_(cache != nullptr) {
  if (cache) {
    stmt_ = cache->Get(db, sql, &rc_);
  } else {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
}

Statement::~Statement() {
  if (cached_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  } else {
    sqlite3_finalize(stmt_);
  }
}

absl::StatusOr<bool> Statement::Step() {
  LOOM_RETURN_IF_ERROR(status());
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return ToStatus(db_, rc, "step");
}

std::string Statement::Text(int col) const {
  const unsigned char* t = sqlite3_column_text(stmt_, col);
  return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, col))
           : std::string();
}

std::string Statement::Blob(int col) const {
  const void* b = sqlite3_column_blob(stmt_, col);
  return b ? std::string(static_cast<const char*>(b), sqlite3_column_bytes(stmt_, col))
           : std::string();
}

absl::Status Exec(sqlite3* db, absl::string_view sql) {
  const std::string text(sql);  // sqlite3_exec reads to the NUL
  char* err = nullptr;
  const int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return ToStatus(nullptr, rc, message);
  }
  return absl::OkStatus();
}

}  // namespace loom::sqlite
