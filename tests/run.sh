#!/usr/bin/env bash
# Sets up, builds and runs every test (unit and integration) with ctest.
#
#   tests/run.sh [CTEST_ARGS...]     e.g. tests/run.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
start=$(date +%s)
deploy/setup.sh "$BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$(nproc)"
built=$(date +%s)
echo "build: $((built - start)) s"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"
echo "tests: $(( $(date +%s) - built )) s"
