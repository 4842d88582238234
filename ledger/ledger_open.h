// File: ledger/ledger_open.h
// Opens a ledger by its spec, the one way loom-coordinator and loom-ledger choose an engine:
//   sqlite:PATH                    the embedded default (a bare PATH means the same)
//   postgresql://USER@HOST:PORT/DB  (or postgres://..., or a libpq "host=... dbname=..."
//                                   string after "postgresql:") several coordinators share it
// The PostgreSQL password never has to be on a command line: libpq reads PGPASSWORD and
// ~/.pgpass, and `password_file` names a file holding it (its first line).
#ifndef LOOM_LEDGER_LEDGER_OPEN_H_
#define LOOM_LEDGER_LEDGER_OPEN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "ledger/ledger_admin.h"

namespace loom {

struct LedgerOpenOptions {
  bool read_only = false;
  int fee_bps = 0;
  std::string holder = "coordinator";       // this process's reservations (and chains)
  absl::Duration answer_retention = absl::Hours(24);
  std::string sqlite_synchronous = "FULL";  // SQLite only
  std::string password_file;                // PostgreSQL only
  int connections = 8;                      // PostgreSQL only: the pool
  Clock* clock = nullptr;
};

// "sqlite" or "postgresql" for a spec; INVALID_ARGUMENT for an empty or unknown one.
absl::StatusOr<std::string> LedgerEngine(const std::string& spec);

absl::StatusOr<std::unique_ptr<LedgerAdmin>> OpenLedger(const std::string& spec,
                                                        const LedgerOpenOptions& options);

}  // namespace loom

#endif  // LOOM_LEDGER_LEDGER_OPEN_H_
