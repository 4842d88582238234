// File: bench/engine_measure.h
// Settlements per second on each ledger engine, in one run on this machine (issue 19);
// loom_engine_bench and loom_bench both print these:
//   raw PostgreSQL    the rows one settlement writes (a transaction, three entries, two
//                     contribution rows, the client's balance move), inserted by the same
//                     number of threads, one SQL transaction each, no checks, no locks beyond
//                     the rows
//   PostgreSQL, 1     PostgresLedger::Settle from `threads` threads, one coordinator (one
//                     ledger, `threads` connections)
//   PostgreSQL, 2     the same threads split over two coordinators (two ledgers with their own
//                     holders and chains) on the same database: the design must not serialise
//                     them on a hot row
//   SQLite            SqliteLedger::Settle from the same threads (group commit)
// Each settlement is a different client's (clients serialise on their own balance row by
// design; a mesh has many), paying two providers. The PostgreSQL server is a real one
// (tests/integration/postgres_server.h), with its default durability (fsync on).
#ifndef LOOM_BENCH_ENGINE_MEASURE_H_
#define LOOM_BENCH_ENGINE_MEASURE_H_

#include "tests/integration/postgres_server.h"

namespace loom::bench {

struct EngineFigures {
  double raw_postgresql = 0;  // settlements' rows per second
  double postgresql_1 = 0;    // settlements per second
  double postgresql_2 = 0;
  double sqlite = 0;
};

// On `pg` (started), in databases of its own; aborts the process on an error.
EngineFigures MeasureEngines(testing::PostgresServer& pg, int settlements, int threads,
                             int chain_shards);

}  // namespace loom::bench

#endif  // LOOM_BENCH_ENGINE_MEASURE_H_
