// File: ledger/ledger_open.cc
#include "ledger/ledger_open.h"

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ledger/postgres_ledger.h"
#include "ledger/sqlite_ledger.h"

namespace loom {

absl::StatusOr<std::string> LedgerEngine(const std::string& spec) {
  if (spec.empty()) return absl::InvalidArgumentError("ledger: empty spec (sqlite:PATH or postgresql://...)");
  if (absl::StartsWith(spec, "postgresql:") || absl::StartsWith(spec, "postgres:")) {
    return std::string("postgresql");
  }
  if (absl::StartsWith(spec, "sqlite:") || spec.find("://") == std::string::npos) {
    return std::string("sqlite");
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "ledger: unknown engine in '", spec.substr(0, spec.find("://")),
      "://...' (sqlite:PATH or postgresql://...)"));
}

absl::StatusOr<std::unique_ptr<LedgerAdmin>> OpenLedger(const std::string& spec,
                                                        const LedgerOpenOptions& options) {
  absl::StatusOr<std::string> engine = LedgerEngine(spec);
  if (!engine.ok()) return engine.status();
  if (*engine == "sqlite") {
    auto ledger = SqliteLedger::Open({.path = std::string(absl::StripPrefix(spec, "sqlite:")),
                                      .synchronous = options.sqlite_synchronous,
                                      .read_only = options.read_only,
                                      .fee_bps = options.fee_bps,
                                      .clock = options.clock,
                                      .holder = options.holder,
                                      .answer_retention = options.answer_retention});
    if (!ledger.ok()) return ledger.status();
    return std::unique_ptr<LedgerAdmin>(std::move(*ledger));
  }
  PostgresLedgerOptions pg;
  // A URI as it is; "postgresql:host=... dbname=..." as a keyword string.
  pg.conninfo = absl::StrContains(spec, "://") ? spec
                                                : std::string(absl::StripPrefix(
                                                      absl::StripPrefix(spec, "postgresql:"),
                                                      "postgres:"));
  if (!options.password_file.empty()) {
    std::ifstream in(options.password_file);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("ledger: cannot read the password file ", options.password_file));
    }
    std::getline(in, pg.password);
  }
  pg.connections = options.connections;
  pg.fee_bps = options.fee_bps;
  pg.holder = options.holder;
  pg.answer_retention = options.answer_retention;
  pg.read_only = options.read_only;
  pg.clock = options.clock;
  auto ledger = PostgresLedger::Open(pg);
  if (!ledger.ok()) return ledger.status();
  return std::unique_ptr<LedgerAdmin>(std::move(*ledger));
}

}  // namespace loom
