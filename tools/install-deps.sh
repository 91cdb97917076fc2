#!/usr/bin/env bash
# Installs what presenced needs to build and test, from Debian 12's packages.
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
  # benchmarks (tools/bench): load generators, the Redis baseline, the chart
  nghttp2-client redis-server gnuplot-nox python3
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
