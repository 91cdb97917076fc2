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

# CPU seconds (user + system) the processes $@ have used so far.
cpu_seconds() {
  local ticks=0 pid
  for pid in "$@"; do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz}'
}

# One round with $1 shards and $2 heartbeats per client call; prints
# "heartbeats/s server-CPU-us-per-heartbeat".
round() {
  local n=$1 batch=$2 map="" started=() i out before after
  for ((i = 0; i < n; i++)); do
    rm -f "$work"/s$i.db*
    start_presenced --db="$work/s$i.db" --shard=s$i --shards="s{0..$((n - 1))}"
    map+="${map:+,}s$i=$address"
    started+=("$server_pid")
  done
  before=$(cpu_seconds "${started[@]}")
  out=$("$bin/presence_load" --server="$map" --mode=batch --users=300000 \
      --batch="$batch" --threads=16 --seconds="$seconds")
  after=$(cpu_seconds "${started[@]}")
  awk -v out="$out" -v cpu="$(awk -v a="$after" -v b="$before" 'BEGIN {print a - b}')" 'BEGIN {
    match(out, /heartbeats=[0-9]+/); n = substr(out, RSTART + 11, RLENGTH - 11)
    match(out, /heartbeats_per_second=[0-9.]+/); r = substr(out, RSTART + 22, RLENGTH - 22)
    printf "%s %.2f\n", r, cpu * 1e6 / n }'
  for server_pid in "${started[@]}"; do stop_presenced; done
}

# Two ways to split the same load: a client call of 100 heartbeats (each
# shard gets 100/N of it: more calls per heartbeat as N grows), and a call
# of 100 x N (each shard gets ~100 per call, as with one shard).
declare -A rates cpus
for ((r = 0; r < rounds; r++)); do
  for n in 1 2 3; do
    for mode in fixed scaled; do
      batch=100
      [ "$mode" = scaled ] && batch=$((100 * n))
      read -r rate cpu <<< "$(round "$n" "$batch")"
      rates[$n.$mode]+="$rate "
      cpus[$n.$mode]+="$cpu "
    done
  done
done
for mode in fixed scaled; do
  one=$(tr ' ' '\n' <<< "${rates[1.$mode]}" | grep . | median)
  for n in 1 2 3; do
    values=$(tr ' ' '\n' <<< "${rates[$n.$mode]}" | grep .)
    med=$(median <<< "$values")
    lo=$(sort -g <<< "$values" | head -1)
    hi=$(sort -g <<< "$values" | tail -1)
    cpu=$(tr ' ' '\n' <<< "${cpus[$n.$mode]}" | grep . | median)
    batch=100
    [ "$mode" = scaled ] && batch=$((100 * n))
    printf 'shards=%d batch=%d heartbeats_per_second=%.0f range=%.0f-%.0f ratio_to_one=%.2f server_cpu_us_per_heartbeat=%s rounds=%d\n' \
      "$n" "$batch" "$med" "$lo" "$hi" \
      "$(awk -v a="$med" -v b="$one" 'BEGIN {print a / b}')" "$cpu" "$rounds"
  done
done
