#!/usr/bin/env bash
# Installs the Debian bookworm packages Loom needs (only those missing) and configures the
# build directory. Used by both README commands: deploy/quickstart.sh and tests/run.sh.
#
#   deploy/setup.sh [BUILD_DIR]      default BUILD_DIR: build
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev libsqlite3-dev sqlite3 libspdlog-dev libcpp-httplib-dev libboost-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev python3 curl openssl
  clang libclang-rt-14-dev
  libpq-dev postgresql  # the PostgreSQL ledger; its tests start a real server in a temp dir
  haproxy  # tests run deploy/mesh/haproxy.cfg in front of two coordinators
  chromium fonts-dejavu-core  # the web console is tested in a real headless browser
  prometheus  # a real Prometheus scrapes /metrics in the tests, and promtool lints it
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The tests start their own Prometheus on loopback; Debian's package would also start and
  # enable a system one on every interface (port 9090). Not on a machine that had none.
  if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
    echo "setup: stopping and disabling the system Prometheus service the package started (the tests run their own)"
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi

# JavaScript clients that the integration tests drive the coordinator with (tests/clients,
# versions pinned in its package-lock.json). A plain Debian machine has no Node: take Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
if ! cmp -s tests/clients/package-lock.json tests/clients/node_modules/.loom-installed-lock 2>/dev/null; then
  echo "setup: installing the pinned JavaScript clients (npm ci in tests/clients)"
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error &&
   cp package-lock.json node_modules/.loom-installed-lock)
fi

BUILD_DIR="${1:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
echo "setup: packages present, build configured in $BUILD_DIR"
