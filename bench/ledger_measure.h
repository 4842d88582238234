// File: bench/ledger_measure.h
// The ledger's settlement throughput beside raw SQLite on the same disk, measured in one run
// (loom_ledger_bench and loom_bench both print these):
//   FsyncP50Us          p50 of one durable single-row commit: the floor of any durable write.
//   RawBatchedPerSecond the rows one settlement writes (a transaction, three entries, two
//                       contribution rows), inserted with prepared statements into the ledger's
//                       own schema (same tables, indexes and foreign keys), 64 per commit.
//   SettlePerSecond     SqliteLedger::Settle of the same records from `threads` threads (the
//                       writer thread group-commits whatever is queued).
// Every measurement uses `synchronous` and files under `dir`; files are removed first.
#ifndef LOOM_BENCH_LEDGER_MEASURE_H_
#define LOOM_BENCH_LEDGER_MEASURE_H_

#include <string>

namespace loom::bench {

struct LedgerBenchOptions {
  std::string dir = "/tmp";
  std::string synchronous = "FULL";
};

double FsyncP50Us(const LedgerBenchOptions& options);
double RawBatchedPerSecond(const LedgerBenchOptions& options, int settlements);
double SettlePerSecond(const LedgerBenchOptions& options, int settlements, int threads);

}  // namespace loom::bench

#endif  // LOOM_BENCH_LEDGER_MEASURE_H_
