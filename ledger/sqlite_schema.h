// File: ledger/sqlite_schema.h
// The SQLite ledger's schema: its migrations (PRAGMA user_version counts those applied), and
// the row shapes that several parts read (a contribution record, a transaction's entries).
//
// Functions take an open connection that the caller uses from one thread. Internal to ledger/.
#ifndef LOOM_LEDGER_SQLITE_SCHEMA_H_
#define LOOM_LEDGER_SQLITE_SCHEMA_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ledger/ledger_hash.h"
#include "ledger/sqlite_statement.h"
#include "loom/v1/common.pb.h"

struct sqlite3;

namespace loom::sqlite {

inline constexpr int kSchemaVersion = 8;

// The schema version the database is at (0: empty).
absl::StatusOr<int> UserVersion(sqlite3* db);

// Takes the database to kSchemaVersion in one transaction (BEGIN IMMEDIATE), or changes
// nothing: FAILED_PRECONDITION for a database newer than this build.
absl::Status Migrate(sqlite3* db);

// The columns of a contribution row, in the order RecordFromRow reads them. kRecordColumns
// are those of every schema since 1 (migrations read them); since schema 8 a row also says
// what the work was and whether it reached the answer.
inline constexpr char kRecordColumns[] =
    "request_id, sub_task_id, attempt, device_id, provider_id, model, role, token_count, weight, "
    "credits_micro, created_at_ms";
inline constexpr char kAllRecordColumns[] =
    "request_id, sub_task_id, attempt, device_id, provider_id, model, role, token_count, weight, "
    "credits_micro, created_at_ms, category, in_answer";

// A record from a row of either column list.
v1::ContributionRecord RecordFromRow(const Statement& q);

// The entries of transaction `txn_id`.
absl::StatusOr<Entries> LoadEntries(sqlite3* db, int64_t txn_id);

}  // namespace loom::sqlite

#endif  // LOOM_LEDGER_SQLITE_SCHEMA_H_
