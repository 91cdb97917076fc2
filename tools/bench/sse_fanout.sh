#!/usr/bin/env bash
# presence-rest with many idle browsers on its event stream: memory and
# threads per stream, and how long one change takes to reach all of them,
# against the same figures with one stream, in the same run.
#   tools/bench/sse_fanout.sh            # 10,000 streams, 5 changes timed
#   tools/bench/sse_fanout.sh --smoke    # 200 streams, 1 change: a check that it runs
# Environment: BUILD_DIR (default build-release, built here in Release).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

clients=10000 rounds=5
if [ "${1:-}" = "--smoke" ]; then clients=200 rounds=1; fi
build=${BUILD_DIR:-build-release}
if [ "$build" = build-release ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPRESENCE_BUILD_TESTS=OFF > /dev/null
fi
cmake --build "$build" -j"$(nproc)" --target presenced presence-rest sse_clients > /dev/null
bin=$root/$build/bin

work=$(mktemp -d)
source tools/bench/common.sh
trap cleanup EXIT
start_presenced --db="$work/p.db"
head -c 32 /dev/urandom | base64 > "$work/secret"

# One fresh proxy per measurement; prints sse_clients' "name value" lines.
measure() {  # CLIENTS FIRST_USER
  local log=$work/rest.$RANDOM.log
  "$bin/presence-rest" --listen=127.0.0.1:0 --server="$address" \
    --jwt_secret_file="$work/secret" 2> "$log" &
  local rest_pid=$!
  pids+=("$rest_pid")
  for _ in $(seq 600); do
    grep -q "serving on" "$log" && break
    sleep 0.05  # poll the log for the line presence-rest prints once it serves
  done
  local rest
  rest=$(sed -n 's/.*serving on \([^ ]*\).*/\1/p' "$log")
  "$bin/sse_clients" --rest="$rest" --rest_pid="$rest_pid" \
    --jwt_secret_file="$work/secret" --clients="$1" --rounds="$rounds" --first_user="$2"
  kill -TERM "$rest_pid"
  wait "$rest_pid" || true
}

one=$(measure 1 1000001)
many=$(measure "$clients" 2000001)
get() { awk -v k="$2" '$1 == k {print $2}' <<< "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}'; }

cat <<REPORT
# presence-rest event streams, $(date -u +%F), $(nproc) cores, loopback
# \`tools/bench/sse_fanout.sh$([ "$clients" = 10000 ] || echo " --smoke")\`; medians of $rounds changes

| figure | 1 stream | $clients streams | ratio |
|---|---|---|---|
| proxy RSS (kB) | $(get "$many" rss_kb_one_stream) | $(get "$many" rss_kb_all_streams) | $(ratio "$(get "$many" rss_kb_all_streams)" "$(get "$many" rss_kb_one_stream)") |
| RSS per added stream (bytes) | - | $(get "$many" bytes_per_stream) | - |
| proxy threads | $(get "$many" threads_one_stream) | $(get "$many" threads_all_streams) | $(ratio "$(get "$many" threads_all_streams)" "$(get "$many" threads_one_stream)") |
| heartbeat sent to change received, p50 (ms) | $(get "$one" change_p50_ms) | $(get "$many" change_p50_ms) | $(ratio "$(get "$many" change_p50_ms)" "$(get "$one" change_p50_ms)") |
| heartbeat sent to change received, p99 (ms) | $(get "$one" change_p99_ms) | $(get "$many" change_p99_ms) | $(ratio "$(get "$many" change_p99_ms)" "$(get "$one" change_p99_ms)") |
| ... to the last stream (ms) | $(get "$one" change_max_ms) | $(get "$many" change_max_ms) | $(ratio "$(get "$many" change_max_ms)" "$(get "$one" change_max_ms)") |
| time to open all streams (s) | - | $(get "$many" open_seconds) | - |
REPORT
