#!/usr/bin/env bash
# Fault injection against a real local mesh, reconciled against the ledger (tests/chaos.py):
# clients retry their own request ids while coordinators and workers are SIGKILLed at random
# and connections drip; then every answered id must be settled exactly once for the cost it
# named, none twice, and `loom-ledger verify` must hold. Loopback only, bounded by SECONDS.
# Not part of CI as a whole; ctest runs a 15-second version (chaos_short).
#
#   tests/chaos.sh [SECONDS] [CLIENTS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL="${1:-120}"
CLIENTS="${2:-4}"
SEED="${3:-7}"
BUILD_DIR="${BUILD_DIR:-build}"
deploy/setup.sh "$BUILD_DIR" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target loom-coordinator loom-worker loom-ledger >/dev/null
exec python3 tests/chaos.py --bin "$BUILD_DIR/bin" --seconds "$SECONDS_TOTAL" \
  --clients "$CLIENTS" --seed "$SEED"
