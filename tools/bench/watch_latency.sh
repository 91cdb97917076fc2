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
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

build-release/bin/presenced --listen=127.0.0.1:0 --db="$work/p.db" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "serving on" "$work/server.log" && break
  sleep 0.1  # poll the log for the line presenced prints once it listens
done
address=$(sed -n 's/.*serving on \([^ ]*\).*/\1/p' "$work/server.log")
[ -n "$address" ] || { cat "$work/server.log"; exit 1; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, presenced --durability=commit on $address"
for w in "${watcher_counts[@]}"; do
  build-release/bin/watch_latency --server="$address" --users="$users" \
    --watchers="$w" --rounds="$rounds"
  echo
done
