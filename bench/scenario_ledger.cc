// File: bench/scenario_ledger.cc
// Scenario 4: settlements per second beside raw batched SQLite inserts of the same rows.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/scenarios.h"
#include "bench/ledger_measure.h"

namespace loom::bench {
void MeasureLedger(const BenchConfig& config, Results* r) {
  const std::string& dir = config.dir;
  const int n = config.ledger_settlements;
  const LedgerBenchOptions options{dir, "FULL"};
  const double raw = RawBatchedPerSecond(options, n);
  const double settle16 = SettlePerSecond(options, n, 16);
  const double settle64 = SettlePerSecond(options, n, 64);
  r->j["ledger"] = {{"settle_per_s", settle64},
                    {"settle_16_threads_per_s", settle16},
                    {"raw_insert_per_s", raw},
                    {"ratio", settle64 / raw},
                    {"synchronous", "FULL"}};
  Line(r, absl::StrFormat("ledger, synchronous=FULL: raw batched inserts %.0f/s; settle %.0f/s "
                          "(64 threads, %.2fx), %.0f/s (16 threads, %.2fx)",
                          raw, settle64, settle64 / raw, settle16, settle16 / raw));
  Line(r, absl::StrFormat("  target settle >= 0.5 x raw: %s", Verdict(settle64 >= 0.5 * raw)));
}

}  // namespace loom::bench
