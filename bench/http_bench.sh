#!/usr/bin/env bash
# The HTTP front door as SDK clients use it (keep-alive, new connections, streams, 16
# concurrent clients), through a coordinator and a worker on the `openai` backend to an
# instant OpenAI-compatible stand-in, beside the same stand-in called directly, in one run.
#
#   bench/http_bench.sh [--json]
#   LOOM_COORDINATOR_FLAGS=--ledger_synchronous=OFF bench/http_bench.sh   # without the fsync
# The coordinator runs with 128 slots and no per-client limit: the bench is one client, and
# its 64 load streams must all run (Admission would refuse half of them by default).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/http_common.sh
"$BIN/loom-coordinator" --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --ledger_db="$dir/loom.db" \
  --plaintext --join_secret_file="$dir/join.secret" --allow_anonymous=anonymous --log_level=warn \
  --request_threads=128 --max_requests_per_client=0 \
  --ready_file="$dir/coordinator.json" ${LOOM_COORDINATOR_FLAGS:-} 2>"$dir/coordinator.log" & pids+=($!)
wait_for "$dir/coordinator.json"
token=$("$BIN/loom-coordinator" --join_secret_file="$dir/join.secret" --issue_join_token=bench-dev:bench-prov)
"$BIN/loom-ledger" --db="$dir/loom.db" grant client:anonymous 1000000 --reference=bench >/dev/null
"$BIN/loom-worker" --coordinator="$(field "$dir/coordinator.json" grpc)" --device_id=bench-dev \
  --provider_id=bench-prov --plaintext --join_token="$token" --listen=127.0.0.1:0 \
  --openai_base_url="$base" --model=bench-model --family=llama --max_concurrency=64 --log_level=warn \
  --ready_file="$dir/worker.json" 2>"$dir/worker.log" & pids+=($!)
wait_for "$dir/worker.json"
# A slow simulated device for the probes-under-load phase: its streams stay open (2,000 tokens
# at 20/s), holding their connections and request threads while /healthz is timed.
slow_token=$("$BIN/loom-coordinator" --join_secret_file="$dir/join.secret" --issue_join_token=slow-dev:bench-prov)
"$BIN/loom-worker" --coordinator="$(field "$dir/coordinator.json" grpc)" --device_id=slow-dev \
  --provider_id=bench-prov --plaintext --join_token="$slow_token" --listen=127.0.0.1:0 \
  --model=slow-sim --family=llama --max_concurrency=128 --sim_tokens_per_second=20 \
  --sim_output_tokens=2000 --log_level=warn --ready_file="$dir/slow.json" 2>"$dir/slow.log" & pids+=($!)
wait_for "$dir/slow.json"
http=$(field "$dir/coordinator.json" http)
for _ in $(seq 100); do
  curl -s "http://$http/v1/models" | grep -q slow-sim && curl -s "http://$http/v1/models" | grep -q bench-model && break
  sleep 0.1
done
# Listed is not yet served: a worker keeps its device out until its model server answers
# (UpstreamMonitor), so wait (bounded) for a chat to go through.
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
       -d '{"model":"bench-model","max_tokens":4,"messages":[{"role":"user","content":"ready?"}]}')" = 200 ] && break
  sleep 0.1
done
# The peer: Portkey's open-source gateway (pinned in bench/peers) in front of the same stand-in.
(cd bench/peers && npm ci --no-audit --no-fund --ignore-scripts >/dev/null 2>&1)
portkey_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
node bench/peers/node_modules/@portkey-ai/gateway/build/start-server.js --port="$portkey_port" \
  --headless >"$dir/portkey.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$portkey_port/" && break; sleep 0.1; done
PORTKEY_BASE="http://127.0.0.1:$portkey_port/v1" node bench/http_bench.mjs "$base" "http://$http/v1" bench-model "$@"
