#!/usr/bin/env bash
# Two coordinator builds side by side in one run: each with its own worker (`openai` backend)
# in front of one instant stand-in, measured by bench/ab_client.mjs in alternating rounds (the
# machine's drift falls on both), then this build beside the stand-in called directly.
#
#   cp build/bin/loom-coordinator /tmp/coordinator-before   # before the change, then rebuild
#   bench/http_ab.sh /tmp/coordinator-before [ROUNDS]       # prints a: before, b: this build
#   FLAGS=--ledger_synchronous=OFF bench/http_ab.sh ...     # flags for both coordinators
#   BASELINE_WORKER=/tmp/worker-before bench/http_ab.sh ... # a's worker too (default: this build's)
set -euo pipefail
cd "$(dirname "$0")/.."
baseline="${1:?usage: bench/http_ab.sh BASELINE_COORDINATOR_BINARY [ROUNDS]}"
rounds="${2:-6}"
source bench/http_common.sh
mesh() {  # name coordinator-binary worker-binary; writes its base URL to $dir/$n.base
  local n=$1 c=$2 w=$3
  "$c" --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --ledger_db="$dir/$n.db" \
    --plaintext --join_secret_file="$dir/$n.secret" --allow_anonymous=anonymous --log_level=warn \
    --request_threads=128 --max_requests_per_client=0 --ready_file="$dir/$n.json" ${FLAGS:-} >/dev/null 2>"$dir/$n.log" & pids+=($!)
  wait_for "$dir/$n.json"
  local token; token=$("$c" --join_secret_file="$dir/$n.secret" --issue_join_token=dev-$n:prov)
  "$BIN/loom-ledger" --db="$dir/$n.db" grant client:anonymous 1000000 --reference=bench >/dev/null
  "$w" --coordinator="$(field "$dir/$n.json" grpc)" --device_id=dev-$n --provider_id=prov --plaintext \
    --join_token="$token" --listen=127.0.0.1:0 --openai_base_url="$base" --model=bench-model --family=llama \
    --max_concurrency=64 --log_level=warn --ready_file="$dir/w$n.json" >/dev/null 2>"$dir/w$n.log" & pids+=($!)
  wait_for "$dir/w$n.json"
  local http; http=$(field "$dir/$n.json" http)
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
       -d '{"model":"bench-model","max_tokens":4,"messages":[{"role":"user","content":"ready?"}]}')" = 200 ] && break
    sleep 0.1
  done
  echo "http://$http/v1" > "$dir/$n.base"
}
mesh old "$baseline" "${BASELINE_WORKER:-$BIN/loom-worker}"
mesh new "$BIN/loom-coordinator" "$BIN/loom-worker"
old=$(cat "$dir/old.base"); new=$(cat "$dir/new.base")
echo "a: $baseline and ${BASELINE_WORKER:-$BIN/loom-worker}, b: this build's"
node bench/ab_client.mjs "$old" "$new" bench-model "$rounds"
echo "a: the stand-in directly, b: $BIN/loom-coordinator"
node bench/ab_client.mjs "$base" "$new" bench-model 2
