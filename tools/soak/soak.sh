#!/usr/bin/env bash
# The soak test (tools/soak/README.md): presenced for N minutes under steady
# heartbeats of many users, churn, and watchers that disconnect and resume;
# then every watcher's view must equal ListOnline.
#
#   tools/soak/soak.sh                # 10 minutes, 100k users, 1,000 watchers
#   tools/soak/soak.sh --minutes=60
#   tools/soak/soak.sh --short        # CI: about 30 s, 5k users, 50 watchers
#
# Environment: BUILD_DIR (default build-release, configured and built here in
# Release; CI passes the tree it has already built), CSV (where the samples
# go; default /tmp/presenced-soak-<time>.csv, kept). Exit status: the soak
# program's (0 only if every check held), or 1 if presenced did not stop
# cleanly on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."

minutes=10 short=false
for arg in "$@"; do
  case $arg in
    --minutes=*) minutes=${arg#--minutes=} ;;
    --short) short=true ;;
    *) echo "usage: $0 [--minutes=N] [--short]" >&2; exit 2 ;;
  esac
done
[[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "$0: --minutes wants a number" >&2; exit 2; }

if $short; then
  # Short enough for CI, long enough that sessions expire, users churn, and
  # every watcher connection is cut at least once.
  server_flags=(--heartbeat_interval=2s --online_window=5s)
  soak_flags=(--seconds=20 --users=5000 --watchers=50 --watch_connections=5
    --subset_size=200 --churn_per_minute=0.3 --tab_churn_per_minute=0.3
    --cut_every=2s --cut_all_every=10s --recreate_every=1s
    --sample_every=1s --progress_every=5s)
else
  # The interval the simulated users keep, and a window of 3 intervals, short
  # enough that expiry happens all the time during the run. A resume ring of
  # 4,096 changes (default 65,536) is full after about a minute of churn, so
  # that after the warm-up every bounded structure is at its bound and RSS
  # growth means something.
  server_flags=(--heartbeat_interval=10s --online_window=30s --watch_ring_size=4096)
  soak_flags=(--seconds="$(awk -v m="$minutes" 'BEGIN {print m * 60}')" --warmup=2m)
fi

build=${BUILD_DIR:-build-release}
if [ "$build" = build-release ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPRESENCE_BUILD_TESTS=OFF > /dev/null
fi
cmake --build "$build" -j"$(nproc)" --target presenced soak > /dev/null
bin=$(cd "$build" && pwd)/bin

work=$(mktemp -d)
source tools/bench/common.sh
trap cleanup EXIT
csv=${CSV:-/tmp/presenced-soak-$(date -u +%Y%m%dT%H%M%SZ).csv}

start_presenced --db="$work/soak.db" "${server_flags[@]}"
echo "# $(date -u +%FT%TZ) $(nproc) cores; presenced ${server_flags[*]} on $address (pid $server_pid)"
echo "# samples: $csv"
status=0
"$bin/soak" --server="$address" --server_pid="$server_pid" --csv="$csv" \
  "${soak_flags[@]}" || status=$?

# presenced must still be there, and stop cleanly.
if ! kill -0 "$server_pid" 2> /dev/null; then
  echo "soak: presenced died during the run; its log:" >&2
  tail -n 50 "$server_log" >&2
  exit 1
fi
kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
pids=()
if [ "$server_status" -ne 0 ]; then
  echo "soak: presenced exited with $server_status on SIGTERM; its log:" >&2
  tail -n 50 "$server_log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "soak: presenced's log (last lines):" >&2
  tail -n 20 "$server_log" >&2
fi
exit "$status"
