#!/usr/bin/env bash
# Checks the lock annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...) with clang's
# thread-safety analysis: every translation unit of the build, syntax only (no code is
# generated, so this takes a few seconds per file), with -Wthread-safety -Werror. A lock
# annotation that the code does not keep fails the run. g++ ignores the annotations, so
# without this they would be prose.
#
#   tests/thread_safety.sh [BUILD_DIR]       (default build; it needs compile_commands.json)
#   ONLY=ledger/ tests/thread_safety.sh      only the files whose path contains ONLY
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-${BUILD_DIR:-build}}"
CLANG="${CLANG:-clang++}"
command -v "$CLANG" >/dev/null || { echo "thread-safety: $CLANG not found (deploy/setup.sh installs clang)" >&2; exit 1; }
[[ -f "$BUILD_DIR/compile_commands.json" ]] || { echo "thread-safety: no $BUILD_DIR/compile_commands.json; build first" >&2; exit 1; }
start=$(date +%s)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One line per translation unit: its directory, then the g++ command rewritten for clang.
python3 - "$BUILD_DIR/compile_commands.json" "$CLANG" "${ONLY:-}" > "$out/commands" <<'PY'
import json, shlex, sys
entries = json.load(open(sys.argv[1]))
for e in entries:
    if not e["file"].endswith(".cc") or sys.argv[3] not in e["file"]:
        continue  # the embedded model's assembly, or a file not asked for
    args = shlex.split(e["command"]) if "command" in e else e["arguments"]
    kept, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if (a == "-c" or a.startswith("-O") or a == "-g" or a.startswith("-fsanitize") or
                a.startswith("-W")):
            continue
        kept.append(a)
    cmd = [sys.argv[2], "-fsyntax-only"] + kept + ["-Wthread-safety", "-Werror=thread-safety"]
    print(e["directory"] + "\t" + shlex.join(cmd))
PY
n=$(wc -l < "$out/commands")
i=0
while IFS=$'\t' read -r dir cmd; do
  i=$((i + 1))
  printf '%s\t%s\n' "$dir" "$cmd" > "$out/$i.cmd"
done < "$out/commands"
# Two jobs per core would only thrash; one per core.
find "$out" -name '*.cmd' -print0 | xargs -0 -P "$(nproc)" -I{} bash -c '
  IFS=$'"'"'\t'"'"' read -r dir cmd < "$1"
  cd "$dir" && eval "$cmd" > "${1%.cmd}.log" 2>&1 || echo failed >> "${1%.cmd}.log"' _ {}
failed=0
for log in "$out"/*.log; do
  if [[ -s "$log" ]]; then
    failed=$((failed + 1))
    cat "$log" >&2
  fi
done
echo "thread-safety: $n translation units, $failed with findings, $(( $(date +%s) - start )) s"
[[ $failed -eq 0 ]]
