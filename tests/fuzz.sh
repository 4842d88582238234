#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz and fuzzes each for
# SECONDS (default 20) from its seed corpus in fuzz/corpus/. A crash fails the run and leaves
# the input as build-fuzz/crash-* (replay: build-fuzz/bin/NAME_fuzzer FILE).
#
#   tests/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
start=$(date +%s)
deploy/setup.sh build >/dev/null   # installs the packages (clang among them)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOOM_FUZZ=ON -DLOOM_FUZZ_SECONDS="$SECONDS_EACH" >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target openai_request_fuzzer decomposer_json_fuzzer \
  config_fuzzer sse_parser_fuzzer ledger_cli_args_fuzzer front_door_fuzzer compiled_plan_fuzzer
built=$(date +%s)
echo "fuzz: built in $((built - start)) s"
cd build-fuzz
ctest -L fuzz -V 2>&1 | tee fuzz.log | grep -E "stat::number_of_executed_units|stat::new_units_added|Test +#|tests passed|Failed" || true
grep -q "100% tests passed" fuzz.log
echo "fuzz: done in $(( $(date +%s) - built )) s"
