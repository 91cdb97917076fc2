#!/usr/bin/env bash
# The benchmark suite of ../shared/BENCH.md: presenced beside Redis and the
# classic SQL design, measured in one run on this machine, as ratios.
#
#   tools/bench/run.sh            # full run (~10 min), writes docs/performance.md
#   tools/bench/run.sh --smoke    # about 20 s, small sizes, writes to a temp file
#
# Environment: BUILD_DIR (default build-release, built here in Release; the
# smoke run in CI passes the tree it has already built), OUT (the report).
# Needs: h2load (nghttp2-client), redis-server, redis-benchmark, gnuplot,
# python3 (`tools/install-deps.sh --bench` installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true
if $smoke; then
  rounds=1 n=20000 fill_users=20000 watchers=10 watch_users=100 sql_updates=100
  big_watchers=20 fanout_rate=500 fanout_seconds=1
  concurrencies=(1 16) batch_seconds=1 curve_seconds=1
  out=${OUT:-$(mktemp --suffix=.md)}
else
  rounds=3 n=200000 fill_users=1000000 watchers=1000 watch_users=1000 sql_updates=2000
  big_watchers=10000 fanout_rate=5000 fanout_seconds=10
  concurrencies=(1 2 4 8 16 32 64) batch_seconds=5 curve_seconds=3
  out=${OUT:-docs/performance.md}
fi
build=${BUILD_DIR:-build-release}
if [ "$build" = build-release ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPRESENCE_BUILD_TESTS=OFF > /dev/null
fi
cmake --build "$build" -j"$(nproc)" --target presenced presence_load watch_latency > /dev/null
bin=$root/$build/bin

work=$(mktemp -d)
source tools/bench/common.sh
trap cleanup EXIT

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# "min-max" of a column of numbers.
spread() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "-" hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# gRPC bodies for h2load: 5-byte prefix + protobuf (BENCH.md).
grpc_body() {  # FILE MESSAGE TEXT
  protoc --encode="presence.v1.$2" -Iproto proto/presence/v1/presence.proto <<< "$3" > "$work/body.pb"
  python3 -c "import struct,sys; b=open('$work/body.pb','rb').read(); open('$1','wb').write(b'\x00'+struct.pack('>I',len(b))+b)"
}
grpc_body "$work/hb.grpc" HeartbeatRequest 'user_id: 42 session_id: "bench"'
python3 -c "open('$work/check.grpc','wb').write(b'\x00\x00\x00\x00\x00')"

# h2load QPS, the load generator pinned to core 1 where there are two.
h2() {  # PATH BODY CLIENTS STREAMS [SECONDS: run for a time, not n requests]
  local pin=() amount=(-n"$n")
  [ "$(nproc)" -ge 2 ] && pin=(taskset -c 1)
  [ -n "${5:-}" ] && amount=(-D"$5")
  "${pin[@]}" h2load -t1 -c"$3" -m"$4" "${amount[@]}" -H 'content-type: application/grpc' \
    -H 'te: trailers' --data="$2" "http://$address$1" 2>&1 |
    awk '/finished in/ {print $4}'
}
h2_median() {  # PATH BODY CLIENTS STREAMS
  for _ in $(seq "$rounds"); do h2 "$@"; done | median
}

# Starts a Redis of its own on a free loopback port; sets $redis_port.
start_redis() {
  redis_port=$(free_port)
  mkdir -p "$work/redis.$redis_port"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis.$redis_port" \
    --appendonly yes --appendfsync everysec --save '' --daemonize no \
    > "$work/redis.$redis_port.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break
    sleep 0.05  # poll until Redis answers
  done
  redis-cli -p "$redis_port" ping > /dev/null 2>&1 ||
    { echo "redis-server did not start:"; cat "$work/redis.$redis_port.log"; exit 1; }
}
start_redis
rb() {  # redis-benchmark rps: CLIENTS PIPELINE COMMAND...
  local c=$1 p=$2
  shift 2
  # "...: 130718.95 requests per second, p50=0.071 msec"
  redis-benchmark -p "$redis_port" -c "$c" -P "$p" -n "$n" -r 1000000 -q "$@" 2> /dev/null |
    tr '\r' '\n' | awk '/requests per second/ {print $(NF-5)}' | tail -1
}
rb_median() { for _ in $(seq "$rounds"); do rb "$@"; done | median; }
zadd=(ZADD presence 1800000000 user:__rand_int__)

echo "== 1. Heartbeat vs Health/Check, c16 m16, commit"
start_presenced --db="$work/commit.db"
# Interleaved rounds (Check, Heartbeat, Check, ...): the machine's drift
# between rounds falls on both sides of the ratio alike.
for _ in $(seq "$rounds"); do
  c=$(h2 /grpc.health.v1.Health/Check "$work/check.grpc" 16 16)
  h=$(h2 /presence.v1.PresenceService/Heartbeat "$work/hb.grpc" 16 16)
  echo "$c $h"
done > "$work/hb_check.dat"
check_qps=$(awk '{print $1}' "$work/hb_check.dat" | median)
hb_qps=$(awk '{print $2}' "$work/hb_check.dat" | median)
hb_check_spread=$(awk '{printf "%.2f\n", $2 / $1}' "$work/hb_check.dat" | spread)
cpu_before=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
h2 /presence.v1.PresenceService/Heartbeat "$work/hb.grpc" 16 16 > /dev/null
cpu_after=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
cpu_us=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
  'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
# h2load counts a gRPC error as HTTP 200: check that the heartbeats landed.
"$bin/presence_load" --server="$address" --mode=list --rounds=1 | grep -q "listed=1 " ||
  { echo "Heartbeat via h2load did not apply"; exit 1; }

echo "== 2. Heartbeat vs Redis ZADD, c16, no pipelining"
hb_c16_commit=$(h2_median /presence.v1.PresenceService/Heartbeat "$work/hb.grpc" 16 1)
stop_presenced
start_presenced --db="$work/tx.db" --durability=async
start_tx=$(date +%s.%N)  # the server's whole life: its log counts all of it
hb_c16_async=$(h2_median /presence.v1.PresenceService/Heartbeat "$work/hb.grpc" 16 1)
h2 /presence.v1.PresenceService/Heartbeat "$work/hb.grpc" 16 16 > /dev/null
stop_presenced
end_tx=$(date +%s.%N)
tx_line=$(grep "transactions" "$server_log" | sed 's/.*store: //')
zadd_c16=$(rb_median 16 1 "${zadd[@]}")

echo "== 3. BatchHeartbeat (100 per call) vs Redis ZADD -P 16"
start_presenced --db="$work/batch.db"
for _ in $(seq "$rounds"); do  # interleaved, as in 1.
  b=$("$bin/presence_load" --server="$address" --mode=batch --users=100000 --batch=100 \
    --threads=16 --seconds="$batch_seconds" | sed 's/.*heartbeats_per_second=//')
  z=$(rb 16 16 "${zadd[@]}")
  echo "$b $z"
done > "$work/batch_zadd.dat"
stop_presenced
batch_hps=$(awk '{print $1}' "$work/batch_zadd.dat" | median)
zadd_p16=$(awk '{print $2}' "$work/batch_zadd.dat" | median)
batch_spread=$(awk '{printf "%.2f\n", $1 / $2}' "$work/batch_zadd.dat" | spread)

echo "== 4-5, 7. $fill_users live sessions: memory, full listing, start-up"
start_presenced --db="$work/big.db" --durability=async
rss_empty=$(rss_kb "$server_pid")
"$bin/presence_load" --server="$address" --mode=fill --users="$fill_users" --batch=1000 --threads=4 > /dev/null
rss_full=$(rss_kb "$server_pid")
bytes_per_session=$(awk -v a="$rss_empty" -v b="$rss_full" -v n="$fill_users" \
  'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
list_ms=$("$bin/presence_load" --server="$address" --mode=list --rounds="$rounds" |
  sed 's/.*median_ms=//')
stop_presenced
# A fresh Redis: one that already held the benchmark's members would keep
# their memory after a DEL and refill it without growing.
start_redis
redis_rss() { redis-cli -p "$redis_port" info memory | tr -d '\r' | awk -F: '/^used_memory_rss:/ {print $2}'; }
redis_rss_before=$(redis_rss)
awk -v n="$fill_users" 'BEGIN {for (i = 1; i <= n; i++) printf "ZADD presence 1800000000 user:%d\n", i}' |
  redis-cli -p "$redis_port" --pipe > /dev/null
# RSS to RSS, as for presenced (MEMORY USAGE would leave out the allocator).
redis_bytes_per=$(awk -v a="$redis_rss_before" -v b="$(redis_rss)" -v n="$fill_users" \
  'BEGIN {printf "%.0f", (b - a) / n}')
redis_usage_per=$(awk -v b="$(redis-cli -p "$redis_port" memory usage presence samples 0)" \
  -v n="$fill_users" 'BEGIN {printf "%.0f", b / n}')
# The median latency of whole ZRANGEBYSCOREs, the reply read by the client.
zrange_ms=$(redis-benchmark -p "$redis_port" -c 1 -n "$rounds" -q \
  ZRANGEBYSCORE presence -inf +inf 2> /dev/null | tr '\r' '\n' |
  awk '/requests per second/ {sub(/p50=/, "", $(NF-1)); print $(NF-1)}' | tail -1)
startup_ms=$(for _ in $(seq "$rounds"); do
  begin=$(date +%s%N)
  start_presenced --db="$work/big.db" --durability=async
  echo $((($(date +%s%N) - begin) / 1000000))
  stop_presenced
done | median)

echo "== 6. Heartbeat-to-watcher delay, fan-out"
start_presenced --db="$work/watch.db"
watch_report=$("$bin/watch_latency" --server="$address" --users="$watch_users" \
  --watchers="$watchers" --rounds="$rounds")
stop_presenced
watch_p50=$(awk '/sent -> change received/ {print $(NF-1)}' <<< "$watch_report")
watch_p99=$(awk '/sent -> change received/ {print $NF}' <<< "$watch_report")
check_rtt_p99=$(awk '/Health\/Check/ {print $NF}' <<< "$watch_report")
# A fresh server: its RSS growth is the idle streams' alone.
start_presenced --db="$work/watch_big.db" --max_watchers="$big_watchers"
big_report=$("$bin/watch_latency" --server="$address" --users="$watch_users" \
  --watchers="$big_watchers" --rounds="$rounds" --server_pid="$server_pid")
stop_presenced
big_p99=$(awk '/sent -> change received/ {print $NF}' <<< "$big_report")
big_check_p99=$(awk '/Health\/Check/ {print $NF}' <<< "$big_report")
bytes_per_stream=$(awk '/RSS per idle stream/ {print $6}' <<< "$big_report")
start_presenced --db="$work/fanout.db"
fanout_report=$("$bin/watch_latency" --server="$address" --mode=throughput \
  --watchers="$watchers" --rate="$fanout_rate" --seconds="$fanout_seconds" \
  --server_pid="$server_pid")
stop_presenced
fanout_per_cpu_s=$(awk '/changes delivered per CPU-second/ {print $5}' <<< "$fanout_report")
fanout_us=$(awk '/changes delivered per CPU-second/ {print $(NF-6)}' <<< "$fanout_report")
fanout_made=$(awk '/changes made/ {gsub(/[(\/s,]/, "", $4); print $4}' <<< "$fanout_report")
fanout_lag=$(awk '/every watcher had the last change/ {print $(NF-2)}' <<< "$fanout_report")

echo "== scale-out: 1, 2, 3 shards through the sharded client"
shards_report=$(ROUNDS="$rounds" SECONDS_PER_ROUND="$batch_seconds" BUILD_DIR="$build" \
  tools/bench/shards.sh)
# Sets ${prefix}_hps, _range, _us from the line of $1 shards at $2 per call.
shard_row() {
  local line
  line=$(awk -v n="$1" -v b="$2" '$1 == "shards=" n && $2 == "batch=" b {print; exit}' \
    <<< "$shards_report")
  printf -v "$3_hps" '%s' "$(sed 's/.*heartbeats_per_second=\([0-9]*\).*/\1/' <<< "$line")"
  printf -v "$3_range" '%s' "$(sed 's/.*range=\([0-9-]*\).*/\1/' <<< "$line")"
  printf -v "$3_us" '%s' "$(sed 's/.*server_cpu_us_per_heartbeat=\([0-9.]*\).*/\1/' <<< "$line")"
}
shard_row 1 100 s1
shard_row 2 200 s2
shard_row 3 300 s3
shard_row 3 100 s3s

echo "== classic SQL design"
classic=$(python3 tools/bench/classic_sql.py "$work/classic.db" --users "$fill_users" \
  --updates "$sql_updates" --rounds "$rounds")
classic_ups=$(sed 's/.*updates_per_second=\([0-9]*\).*/\1/' <<< "$classic")
classic_list_ms=$(sed 's/.*list_ms=\([0-9.]*\).*/\1/' <<< "$classic")

echo "== throughput vs concurrency (m1)"
start_presenced --db="$work/curve.db"
: > "$work/curve.dat"
for c in "${concurrencies[@]}"; do
  printf '%s %s %s %s\n' "$c" \
    "$(h2 /grpc.health.v1.Health/Check "$work/check.grpc" "$c" 1 "$curve_seconds")" \
    "$(h2 /presence.v1.PresenceService/Heartbeat "$work/hb.grpc" "$c" 1 "$curve_seconds")" \
    "$(rb "$c" 1 "${zadd[@]}")" >> "$work/curve.dat"
done
stop_presenced
chart=${out%.md}-throughput.png
gnuplot <<EOF
set terminal pngcairo size 800,480
set output "$chart"
set title "Unary throughput vs concurrency (one request in flight per connection)"
set xlabel "connections"
set ylabel "requests / s"
set logscale x 2
set key left top
set grid
plot "$work/curve.dat" using 1:2 with linespoints title "Health/Check (empty gRPC call)", \
     "" using 1:3 with linespoints title "Heartbeat (--durability=commit)", \
     "" using 1:4 with linespoints title "Redis ZADD (appendfsync everysec)"
EOF

cpus=$(nproc)
cat > "$out" <<EOF
# Performance

Measured by \`tools/bench/run.sh$($smoke && echo " --smoke")\` on $(date -u +%F),
this project's machine ($cpus cores, shared and noisy), in one run: medians of
$rounds rounds. Absolute figures move between runs; the ratios beside a
baseline measured in the same run are the claim (\`../shared/BENCH.md\`).
Load generators: h2load (one thread, pinned to core 1), redis-benchmark,
\`tools/bench/presence_load\` and \`tools/bench/watch_latency\`; Redis 7 with
\`appendonly yes\`, \`appendfsync everysec\`; the classic design is
\`tools/bench/classic_sql.py\` (SQLite, autocommit UPDATE per heartbeat).

| figure | presenced | baseline | ratio | target |
|---|---|---|---|---|
| Heartbeat QPS / Health/Check QPS, c16 m16, commit (interleaved rounds: $hb_check_spread) | $hb_qps | $check_qps | $(ratio "$hb_qps" "$check_qps") | >= 0.90 |
| Heartbeat QPS / Redis ZADD QPS, c16, no pipelining, commit | $hb_c16_commit | $zadd_c16 | $(ratio "$hb_c16_commit" "$zadd_c16") | >= 1.0 |
| the same with --durability=async (comparable to everysec) | $hb_c16_async | $zadd_c16 | $(ratio "$hb_c16_async" "$zadd_c16") | |
| BatchHeartbeat heartbeats/s (100 per call, 16 callers) / ZADD -P 16 (interleaved rounds: $batch_spread) | $batch_hps | $zadd_p16 | $(ratio "$batch_hps" "$zadd_p16") | >= 2.0 |
| RSS bytes per live session at $fill_users (default session) / Redis RSS bytes per ZSET member | $bytes_per_session | $redis_bytes_per | $(ratio "$bytes_per_session" "$redis_bytes_per") | <= 100 B and < Redis |
| full ListOnline of $fill_users online, ms / ZRANGEBYSCORE of all, ms | $list_ms | $zrange_ms | $(ratio "$list_ms" "$zrange_ms") | <= 1.0 |
| Heartbeat-to-watcher p99 with $watchers watchers, ms (sent -> received) / Check RTT p99 | $(awk -v v="$watch_p99" 'BEGIN {printf "%.2f", v / 1000}') | $(awk -v v="$check_rtt_p99" 'BEGIN {printf "%.2f", v / 1000}') | $(ratio "$watch_p99" "$check_rtt_p99") | p99 <= 5 ms |
| the same with $big_watchers watchers | $(awk -v v="$big_p99" 'BEGIN {printf "%.2f", v / 1000}') | $(awk -v v="$big_check_p99" 'BEGIN {printf "%.2f", v / 1000}') | $(ratio "$big_p99" "$big_check_p99") | p99 <= 50 ms |
| server RSS bytes per idle WatchPresence stream ($big_watchers streams) | $bytes_per_stream | | | <= 8192 |
| changes delivered per server CPU-second, $watchers watchers, $fanout_rate changes/s offered ($fanout_made/s made) | $fanout_per_cpu_s | | | >= 2000000 |
| start-up with $fill_users live sessions to SERVING, ms | $startup_ms | | | <= 2000 |
| SQLite under full heartbeat load (async, 100 ms interval) | $tx_line in $(awk -v a="$start_tx" -v b="$end_tx" 'BEGIN {printf "%.1f", b - a}') s | | | bounded by --commit_interval |
| BatchHeartbeat heartbeats/s through the sharded client, 2 shards, 200 per call (100 per shard; rounds $s2_range, $s2_us µs server CPU per heartbeat) / 1 shard, 100 per call ($s1_range, $s1_us µs) | $s2_hps | $s1_hps | $(ratio "$s2_hps" "$s1_hps") | aggregate (capacity model below) |
| the same, 3 shards, 300 per call (rounds $s3_range, $s3_us µs) | $s3_hps | $s1_hps | $(ratio "$s3_hps" "$s1_hps") | |
| the same, 3 shards, 100 per call (about 33 per shard; rounds $s3s_range, $s3s_us µs) | $s3s_hps | $s1_hps | $(ratio "$s3s_hps" "$s1_hps") | |
| classic design: autocommit UPDATEs/s / presenced Heartbeat c16 m16 | $classic_ups | $hb_qps | $(ratio "$classic_ups" "$hb_qps") | |
| classic design: SELECT of $fill_users recent, ms / presenced full ListOnline | $classic_list_ms | $list_ms | $(ratio "$classic_list_ms" "$list_ms") | |

Server CPU per Heartbeat (c16 m16, commit): $cpu_us µs.
Fan-out: server CPU per delivered change $fanout_us µs; the watchers had the
last change $fanout_lag s after the load stopped (each watcher asks for up to
1,000 changes per message; the load is fresh users coming online with a
Heartbeat and leaving with a MarkOffline, two changes each).
Redis \`MEMORY USAGE presence\` per member (without the allocator's share): $redis_usage_per B.
h2load sends one fixed body, so the Heartbeat rows (and the chart) stamp one
session again and again: the group commit then coalesces each batch into a
single row write. Distinct users are what \`presence_load\` drives (the
BatchHeartbeat, memory and listing rows). The SQLite row counts the changes
recorded over that server's whole life, most of them coalesced.
Heartbeat-to-watcher p50 with $watchers watchers: $(awk -v v="$watch_p50" 'BEGIN {printf "%.2f", v / 1000}') ms.

![throughput vs concurrency]($(basename "$chart"))

EOF
if ! $smoke; then cat tools/bench/analysis.md >> "$out"; fi
echo "wrote $out"
cat "$out"
