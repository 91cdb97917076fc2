#!/usr/bin/env bash
# The scale-out row: aggregate BatchHeartbeat heartbeats/s through the
# sharded C++ client (presence_load --server=SHARD_MAP) with 1, 2 and 3
# shards on this machine, in interleaved rounds (1, 2, 3, 1, 2, 3, ...), each
# round on fresh databases. Prints one line per shard count: median, range,
# and the ratio to one shard measured in the same run.
#
#   tools/bench/shards.sh                  # 3 rounds of 5 s each
#   ROUNDS=1 SECONDS_PER_ROUND=1 tools/bench/shards.sh   # a quick look
#
# BUILD_DIR as in run.sh (default build-release, built here in Release).
# Every process shares this machine's cores: the figure says what the
# client routing and the shards cost here, not how a cluster of nodes with
# their own cores scales (docs/performance.md's capacity model does that).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_ROUND:-5}
build=${BUILD_DIR:-build-release}
if [ "$build" = build-release ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPRESENCE_BUILD_TESTS=OFF > /dev/null
fi
cmake --build "$build" -j"$(nproc)" --target presenced presence_load > /dev/null
bin=$root/$build/bin

work=$(mktemp -d)
source tools/bench/common.sh
trap cleanup EXIT

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# One round with $1 shards; prints heartbeats/s.
round() {
  local n=$1 map="" started=() i
  for ((i = 0; i < n; i++)); do
    rm -f "$work"/s$i.db*
    start_presenced --db="$work/s$i.db" --shard=s$i --shards="s{0..$((n - 1))}"
    map+="${map:+,}s$i=$address"
    started+=("$server_pid")
  done
  "$bin/presence_load" --server="$map" --mode=batch --users=300000 --batch=100 \
      --threads=16 --seconds="$seconds" |
    sed -n 's/.*heartbeats_per_second=\([0-9.]*\).*/\1/p'
  for server_pid in "${started[@]}"; do stop_presenced; done
}

declare -A results
for ((r = 0; r < rounds; r++)); do
  for n in 1 2 3; do
    results[$n]+="$(round "$n") "
  done
done
one=$(tr ' ' '\n' <<< "${results[1]}" | grep . | median)
for n in 1 2 3; do
  values=$(tr ' ' '\n' <<< "${results[$n]}" | grep .)
  med=$(median <<< "$values")
  lo=$(sort -g <<< "$values" | head -1)
  hi=$(sort -g <<< "$values" | tail -1)
  printf 'shards=%d heartbeats_per_second=%.0f range=%.0f-%.0f ratio_to_one=%.2f rounds=%d\n' \
    "$n" "$med" "$lo" "$hi" "$(awk -v a="$med" -v b="$one" 'BEGIN {print a / b}')" "$rounds"
done
