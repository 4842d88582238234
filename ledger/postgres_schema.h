// File: ledger/postgres_schema.h
// The PostgreSQL ledger's schema: its migrations, in order (migration i takes the schema from
// version i to i+1), and the advisory lock every migration runs under. Internal to ledger/.
#ifndef LOOM_LEDGER_POSTGRES_SCHEMA_H_
#define LOOM_LEDGER_POSTGRES_SCHEMA_H_

#include <cstdint>

#include "absl/types/span.h"

namespace loom::pg {

absl::Span<const char* const> Migrations();

// Every migration and the schema version run under this advisory lock.
inline constexpr int64_t kMigrationLock = 0x4c4f4f4d;  // "LOOM"

}  // namespace loom::pg

#endif  // LOOM_LEDGER_POSTGRES_SCHEMA_H_
