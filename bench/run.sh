#!/usr/bin/env bash
# Sets up, builds and runs loom_bench: the coordinator beside a raw gRPC hop, the ledger beside
# raw SQLite, 10,000 devices, in one run (bench/loom_bench.cc says what each line measures).
# Then the micro-benchmarks of the analyzer, decomposer, selector and ledger.
#
#   bench/run.sh [LOOM_BENCH_ARGS...]     e.g. bench/run.sh --json
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
deploy/setup.sh "$BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target loom_bench loom_micro_bench
"$BUILD_DIR/bin/loom_bench" "$@"
if [[ " $* " != *" --json "* ]]; then
  echo
  "$BUILD_DIR/bin/loom_micro_bench" --benchmark_min_time=0.2 \
    --benchmark_filter='Analyze|Rules|Indexed|SnapshotAndSelect|Settle|RawSqlite'
fi
