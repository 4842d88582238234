// Settlement throughput of the ledger beside raw SQLite on the same disk, in one run:
// What each line means is in bench/ledger_measure.h; settle runs from 1, 16 and 64 threads.
// All at the same synchronous setting (FULL unless --synchronous says otherwise).
//
//   build/bin/loom_ledger_bench [--n=3000] [--synchronous=FULL] [--dir=/tmp] [--json]
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/ledger_measure.h"

ABSL_FLAG(int, n, 3000, "Settlements per measurement.");
ABSL_FLAG(std::string, synchronous, "FULL", "SQLite synchronous setting for every measurement.");
ABSL_FLAG(std::string, dir, "/tmp", "Directory for the database files (the disk measured).");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a table.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_n);
  const loom::bench::LedgerBenchOptions options{absl::GetFlag(FLAGS_dir),
                                                absl::GetFlag(FLAGS_synchronous)};
  const double fsync = loom::bench::FsyncP50Us(options);
  const double raw = loom::bench::RawBatchedPerSecond(options, n);
  const double settle1 = loom::bench::SettlePerSecond(options, n, 1);
  const double settle16 = loom::bench::SettlePerSecond(options, n, 16);
  const double settle64 = loom::bench::SettlePerSecond(options, n, 64);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat(
        "{\"synchronous\": \"%s\", \"fsync_p50_us\": %.0f, \"raw_insert_per_s\": %.0f, "
        "\"settle_per_s\": %.0f, \"settle_1thread_per_s\": %.0f, \"settle_16threads_per_s\": %.0f}\n",
        absl::GetFlag(FLAGS_synchronous), fsync, raw, settle64, settle1, settle16);
    return 0;
  }
  std::cout << absl::StrFormat(
      "synchronous=%s, %d settlements, files in %s\n"
      "fsync p50 (one durable commit)      %8.0f us\n"
      "raw batched inserts, same rows      %8.0f settlements/s\n"
      "ledger settle, 1 thread             %8.0f settlements/s  (%.2fx raw)\n"
      "ledger settle, 16 threads           %8.0f settlements/s  (%.2fx raw)\n"
      "ledger settle, 64 threads           %8.0f settlements/s  (%.2fx raw)\n",
      absl::GetFlag(FLAGS_synchronous), n, absl::GetFlag(FLAGS_dir), fsync, raw, settle1,
      settle1 / raw, settle16, settle16 / raw, settle64, settle64 / raw);
  return 0;
}
