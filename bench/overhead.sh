#!/usr/bin/env bash
# Coordinator overhead per request, as the coordinator reports it (wall time inside the
# coordinator minus time waiting on devices and on the ledger), for passthrough and compiled
# requests against zero-latency simulated devices on loopback. Hand-run; loom_bench
# (bench/run.sh) measures the same beside a raw gRPC hop, with throughput.
#
#   bench/overhead.sh [REQUESTS]      default 100 of each kind
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
BIN=${BIN:-build/bin}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Plaintext on loopback, devices joining with tokens, as loom_bench runs.
"$BIN/loom-coordinator" --grpc_listen=127.0.0.1:0 --ledger_db="$WORK/loom.db" \
  --plaintext --join_secret_file="$WORK/join.secret" \
  --ready_file="$WORK/c.json" --log_level=warn 2>"$WORK/c.log" & PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/c.json" ] && break; sleep 0.1; done
COORD=$(sed -n 's/.*"grpc": "\([^"]*\)".*/\1/p' "$WORK/c.json")
for m in qwen2.5-coder-7b llama-3.1-8b mistral-7b; do
  token=$("$BIN/loom-coordinator" --join_secret_file="$WORK/join.secret" --issue_join_token="dev-$m")
  "$BIN/loom-worker" --coordinator="$COORD" --device_id="dev-$m" --model="$m" --plaintext \
    --join_token="$token" \
    --sim_output_tokens=32 --log_level=warn 2>>"$WORK/w.log" & PIDS+=($!)
done
for _ in $(seq 1 100); do
  [ "$("$BIN/loom" --plaintext --coordinator="$COORD" devices --json | grep -c '"deviceId"')" = 3 ] && break
  sleep 0.1
done

measure() {  # $1 label, $2 prompt
  : > "$WORK/$1.txt"
  for _ in $(seq 1 "$N"); do
    "$BIN/loom" --plaintext --coordinator="$COORD" ask --json "$2" |
      sed -n 's/.*"coordinatorOverheadUs": "\([0-9]*\)".*/\1/p' >> "$WORK/$1.txt"
  done
  sort -n "$WORK/$1.txt" | awk -v label="$1" '{v[NR]=$1} END {
    printf "%-12s n=%d  p50=%d us  p90=%d us  p99=%d us\n", label, NR, v[int(NR*0.5)+1], v[int(NR*0.9)+1], v[int(NR*0.99)+1] }'
}
measure passthrough "What is the capital of Australia?"
measure compiled "Translate this Python code to Rust and explain the key differences between the two implementations: def f(xs): return sum(xs)"
