#!/usr/bin/env bash
# Sets up, builds, checks the lock annotations with clang (tests/thread_safety.sh; THREAD_SAFETY=0
# skips it) and runs every test (unit and integration) with ctest.
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
if [[ "${THREAD_SAFETY:-1}" != 0 ]]; then
  bash tests/thread_safety.sh "$BUILD_DIR"
fi
checked=$(date +%s)
cd "$BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"
echo "tests: $(( $(date +%s) - checked )) s"
