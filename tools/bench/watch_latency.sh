#!/usr/bin/env bash
# Heartbeat-to-watcher delay on loopback, with 1, 100 and 1,000 watchers.
#   tools/bench/watch_latency.sh           # 1,000 users x 3 rounds each
#   tools/bench/watch_latency.sh --smoke   # seconds: a check that it runs
# Builds a Release tree in build-release/, starts presenced there on a
# temporary database with the default --durability=commit, and stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."

users=1000 rounds=3 watcher_counts=(1 100 1000)
if [ "${1:-}" = "--smoke" ]; then
  users=50 rounds=1 watcher_counts=(1 10)
fi

cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPRESENCE_BUILD_TESTS=OFF > /dev/null
cmake --build build-release -j"$(nproc)" --target presenced watch_latency > /dev/null

work=$(mktemp -d)
bin=build-release/bin
source tools/bench/common.sh
trap cleanup EXIT
start_presenced --db="$work/p.db"

echo "# $(date -u +%FT%TZ) $(nproc) cores, presenced --durability=commit on $address"
for w in "${watcher_counts[@]}"; do
  build-release/bin/watch_latency --server="$address" --users="$users" \
    --watchers="$w" --rounds="$rounds"
  echo
done
