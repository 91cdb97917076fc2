#!/usr/bin/env bash
# Installs what presenced needs to build and test, from Debian 12's packages.
# With --bench, also what tools/bench/run.sh needs (Redis among them: on a
# machine with systemd its package starts a Redis service).
# Runs as root, or re-runs itself with sudo.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

packages=(
  # build
  cmake g++ make pkg-config
  # dependencies (see README: why each)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsqlitecpp-dev libsqlite3-dev grpc-proto
  # tests and checks
  libgtest-dev libgmock-dev sqlite3 clang-format
)
if [ "${1:-}" = "--bench" ]; then
  # load generators, the Redis baseline, the chart, the classic-SQL script
  packages+=(nghttp2-client redis-server gnuplot-nox python3)
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
