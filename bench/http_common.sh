# Sourced by bench/http_bench.sh and bench/http_ab.sh (after `cd` to the checkout): builds the
# HTTP path's binaries, makes a temporary directory, and starts the instant stand-in.
# Sets BIN, dir, pids (killed on exit), base (the stand-in's /v1 URL); defines wait_for, field.
BUILD_DIR="${BUILD_DIR:-build}"
deploy/setup.sh "$BUILD_DIR" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target loom-coordinator loom-worker loom-ledger openai_standin >/dev/null
BIN="$BUILD_DIR/bin"
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; [ -n "${HTTP_BENCH_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"' EXIT

wait_for() {  # a ready file, at most 10 s
  for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "$0: $1 never appeared" >&2; exit 1
}
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

"$BIN/openai_standin" --models=bench-model --threads=512 --ready_file="$dir/standin.json" 2>"$dir/standin.log" & pids+=($!)
wait_for "$dir/standin.json"
base=$(field "$dir/standin.json" base_url)
