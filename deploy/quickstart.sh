#!/usr/bin/env bash
# Sets up and builds Loom, then runs a local mesh on loopback: one coordinator and three
# simulated devices (qwen-coder, llama, mistral families, from deploy/examples/), every link
# over mutual TLS with development certificates (deploy/dev-certs.sh). Grants the
# client credits, sends the worked example (compiled into two sub-tasks on two devices) and a
# pinned request, prints plans, answers, devices, the ledger rows, the audit and the payouts,
# then stops everything it started (also on Ctrl-C or on failure).
#
#   deploy/quickstart.sh            run the demo and stop
#   deploy/quickstart.sh --keep     leave the mesh running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

BUILD_DIR="${BUILD_DIR:-build}"
t0=$(date +%s)
deploy/setup.sh "$BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target loom-coordinator loom-worker loom loom-ledger
BIN="$ROOT/$BUILD_DIR/bin"
echo "quickstart: built in $(( $(date +%s) - t0 )) s"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/loom-quickstart-XXXXXX")
PIDS=()
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $code -ne 0 ]; then
    echo "quickstart: failed (exit $code); logs:" >&2
    tail -n 20 "$WORK"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most 30 s) for a daemon's ready file and prints its gRPC address.
wait_ready() {
  local file=$1 pid=$2
  for _ in $(seq 1 300); do
    if [ -s "$file" ]; then sed -n 's/.*"grpc": "\([^"]*\)".*/\1/p' "$file"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "quickstart: process $pid exited early" >&2; return 1; }
    sleep 0.1
  done
  echo "quickstart: $file did not appear" >&2
  return 1
}

# A development CA, the coordinator's certificate, the CLI's, and one per device: each device
# certificate names the device and the provider paid for it.
CERTS="$WORK/certs"
deploy/dev-certs.sh "$CERTS" qwen-coder-box:alice llama-box:bob mistral-box:carol
LOOM=("$BIN/loom" --tls_ca="$CERTS/ca.crt" --tls_cert="$CERTS/client.crt" --tls_key="$CERTS/client.key")

# The web console's operator key (the console at /console/ sees everything with it).
openssl rand -hex 24 > "$WORK/operator.key"
"$BIN/loom-coordinator" --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 \
  --tls_cert="$CERTS/coordinator.crt" --tls_key="$CERTS/coordinator.key" \
  --tls_client_ca="$CERTS/ca.crt" --console_operator_key_file="$WORK/operator.key" \
  --ledger_db="$WORK/loom.db" --ready_file="$WORK/coordinator.json" 2>"$WORK/coordinator.log" &
PIDS+=($!)
COORD=$(wait_ready "$WORK/coordinator.json" $!)
HTTP=$(sed -n 's/.*"http": "\([^"]*\)".*/\1/p' "$WORK/coordinator.json")
echo "quickstart: coordinator on $COORD (gRPC, mutual TLS) and https://$HTTP (OpenAI-compatible HTTP)"
# A client account with an API key and credits from the mint (the grant is idempotent).
export LOOM_API_KEY=$("$BIN/loom-ledger" --db="$WORK/loom.db" keys create --client=demo 2>/dev/null)
"$BIN/loom-ledger" --db="$WORK/loom.db" grant client:demo 10 --reference=quickstart

for family in qwen-coder llama mistral; do
  device=$(sed -n 's/.*"device_id": "\([^"]*\)".*/\1/p' "deploy/examples/worker-$family.json")
  "$BIN/loom-worker" --coordinator="$COORD" --config="deploy/examples/worker-$family.json" \
    --tls_cert="$CERTS/$device.crt" --tls_key="$CERTS/$device.key" --tls_ca="$CERTS/ca.crt" \
    --ready_file="$WORK/worker-$family.json" 2>"$WORK/worker-$family.log" &
  PIDS+=($!)
  wait_ready "$WORK/worker-$family.json" $! >/dev/null
done
# Registration is asynchronous: wait (at most 15 s) until all three devices are listed.
for _ in $(seq 1 150); do
  n=$("${LOOM[@]}" --coordinator="$COORD" devices --json | grep -c '"deviceId"' || true)
  [ "$n" = 3 ] && break
  sleep 0.1
done
[ "$n" = 3 ] || { echo "quickstart: only $n of 3 devices registered" >&2; exit 1; }

echo
echo "== devices =="
"${LOOM[@]}" --coordinator="$COORD" devices
echo
PROMPT="Translate this Python code to Rust and explain the key differences between the two implementations: def total(xs): return sum(x * x for x in xs)"
echo "== loom ask \"$PROMPT\" =="
"${LOOM[@]}" --coordinator="$COORD" ask "$PROMPT"
echo
echo "== loom ask --family=qwen-coder \"Write a function that reverses a linked list in C\" =="
"${LOOM[@]}" --coordinator="$COORD" ask --family=qwen-coder "Write a function that reverses a linked list in C"
echo
echo "== the same mesh through the OpenAI-compatible HTTP API (curl) =="
curl -s --cacert "$CERTS/ca.crt" "https://$HTTP/v1/chat/completions" -H "Authorization: Bearer $LOOM_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "loom-auto", "messages": [{"role": "user", "content": "What is the capital of Australia?"}]}'
echo
echo
echo "== devices after the requests =="
"${LOOM[@]}" --coordinator="$COORD" devices
echo
echo "== ledger: contribution records (loom-ledger records) =="
"$BIN/loom-ledger" --db="$WORK/loom.db" records
echo
echo "== ledger: the client's balance (loom-ledger balance client:demo) =="
"$BIN/loom-ledger" --db="$WORK/loom.db" balance client:demo
echo
echo "== ledger: audit (loom-ledger verify) =="
"$BIN/loom-ledger" --db="$WORK/loom.db" verify
echo
echo "== ledger: who gets paid (loom-ledger payouts) =="
"$BIN/loom-ledger" --db="$WORK/loom.db" payouts
echo
echo "quickstart: done in $(( $(date +%s) - t0 )) s"
if [ $KEEP = 1 ]; then
  echo "quickstart: mesh still running (Ctrl-C stops it); try:"
  echo "  LOOM_API_KEY=$LOOM_API_KEY ${LOOM[*]} --coordinator=$COORD ask \"...\""
  echo "  curl --cacert $CERTS/ca.crt https://$HTTP/v1/models -H \"Authorization: Bearer $LOOM_API_KEY\""
  echo "  the web console (operator): https://$HTTP/console/#key=$(cat "$WORK/operator.key")"
  echo "    (a browser does not know the development CA: import $CERTS/ca.crt, or accept the warning)"
  echo "  the web console (client demo): https://$HTTP/console/#key=$LOOM_API_KEY"
  wait
fi
