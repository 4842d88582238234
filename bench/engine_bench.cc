// Settlements per second on each ledger engine, in one run on this machine (issue 19): what
// bench/engine_measure.h describes, against a real PostgreSQL server started for the run in a
// temporary directory.
//
//   build/bin/loom_engine_bench [--n=2000] [--threads=16] [--chain_shards=32] [--json]
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "bench/engine_measure.h"
#include "tests/integration/postgres_server.h"

ABSL_FLAG(int, n, 2000, "Settlements per measurement.");
ABSL_FLAG(int, threads, 16, "Threads settling at once.");
ABSL_FLAG(int, chain_shards, 32, "Hash chains per coordinator (PostgresLedgerOptions).");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a table.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_n), threads = absl::GetFlag(FLAGS_threads);
  loom::testing::PostgresServer pg;
  if (!pg.Start()) {
    std::cerr << "engine_bench: PostgreSQL did not start: " << pg.error() << "\n";
    return 1;
  }
  const loom::bench::EngineFigures f =
      loom::bench::MeasureEngines(pg, n, threads, absl::GetFlag(FLAGS_chain_shards));
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat(
        "{\"threads\": %d, \"raw_postgresql_per_s\": %.0f, \"postgresql_1_coordinator_per_s\": %.0f, "
        "\"postgresql_2_coordinators_per_s\": %.0f, \"sqlite_per_s\": %.0f}\n",
        threads, f.raw_postgresql, f.postgresql_1, f.postgresql_2, f.sqlite);
    return 0;
  }
  std::cout << absl::StrFormat(
      "%d settlements each, %d threads, 256 clients, durable commits\n"
      "raw PostgreSQL, same rows           %8.0f settlements/s\n"
      "PostgreSQL ledger, 1 coordinator    %8.0f settlements/s  (%.2fx raw)\n"
      "PostgreSQL ledger, 2 coordinators   %8.0f settlements/s  (%.2fx raw, %.2fx one coordinator)\n"
      "SQLite ledger                       %8.0f settlements/s\n",
      n, threads, f.raw_postgresql, f.postgresql_1, f.postgresql_1 / f.raw_postgresql,
      f.postgresql_2, f.postgresql_2 / f.raw_postgresql, f.postgresql_2 / f.postgresql_1, f.sqlite);
  return 0;
}
