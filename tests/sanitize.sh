#!/usr/bin/env bash
# Builds the unit tests with sanitizers and runs them:
#   asan: AddressSanitizer + UndefinedBehaviorSanitizer (any report fails the run), every unit test
#   tsan: ThreadSanitizer, every unit test whose threads are Loom's own: all but the few that run
#         an in-process gRPC server (Debian's gRPC is not instrumented). absl::Mutex, CondVar and
#         Notification are made visible to TSan by tests/tsan/absl_sync_annotations.cc, and the
#         TsanShim tests check that it hides no real race.
#   threads: clang's thread-safety analysis over every translation unit (tests/thread_safety.sh),
#         which tests/run.sh and CI also run
# asan and tsan get their own build directories (build-asan, build-tsan); threads reads build/.
#
#   tests/sanitize.sh [asan|tsan|threads]...      default: all three
set -euo pipefail
cd "$(dirname "$0")/.."
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(asan tsan threads)
# Every fuzzer, found by name: its seed-replay test is a unit test, so a fuzzer left out of the
# list would fail as "Not Run" (front_door and compiled_plan once were).
mapfile -t fuzzers < <(cd fuzz && ls ./*_fuzzer.cc | sed 's|^\./||; s|\.cc$||')
TARGETS=(common_test ledger_test coordinator_test worker_test "${fuzzers[@]}")
for kind in "${kinds[@]}"; do
  start=$(date +%s)
  dir="build-$kind"
  case "$kind" in
    asan)
      flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
      exclude=""
      extra="-DLOOM_TSAN_ABSL_SHIM=OFF"
      targets=("${TARGETS[@]}")
      export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
      export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
      ;;
    tsan)
      flags="-fsanitize=thread -fno-omit-frame-pointer"
      # Tests that run an in-process gRPC server or channel: the races TSan reports there are
      # inside uninstrumented gRPC (its slices and absl::Status handed between its threads).
      exclude="WorkerService|Registrar|GrpcDeviceClient"
      extra="-DLOOM_TSAN_ABSL_SHIM=ON"
      targets=("${TARGETS[@]}" tsan_shim_check)
      export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
      ;;
    threads)
      deploy/setup.sh build >/dev/null
      bash tests/thread_safety.sh build
      continue
      ;;
    *) echo "sanitize: unknown kind '$kind' (asan, tsan or threads)" >&2; exit 2 ;;
  esac
  CMAKE_BUILD_TYPE=RelWithDebInfo deploy/setup.sh "$dir" >/dev/null
  cmake -S . -B "$dir" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
    -DLOOM_BUILD_BENCH=OFF "$extra" >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}"
  built=$(date +%s)
  echo "sanitize[$kind]: built in $((built - start)) s"
  (cd "$dir" && ctest -L unit -j "$(nproc)" --timeout 600 --output-on-failure ${exclude:+-E "$exclude"})
  echo "sanitize[$kind]: tests passed in $(( $(date +%s) - built )) s"
done
