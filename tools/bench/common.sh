# Shared by the benchmark scripts and tests/install_test.sh (source it).
# Expects $bin (presenced's directory) and $work (a temporary directory);
# adds what it starts to pids.
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}

# Starts presenced with extra flags on a free loopback port; sets $address,
# $server_pid and $server_log.
start_presenced() {
  server_log=$work/presenced.$RANDOM.log
  "$bin/presenced" --listen=127.0.0.1:0 "$@" 2> "$server_log" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 600); do
    grep -q "serving on" "$server_log" && break
    sleep 0.05  # poll the log for the line presenced prints once it serves
  done
  address=$(sed -n 's/.*serving on \([^ ]*\).*/\1/p' "$server_log")
  [ -n "$address" ] || { cat "$server_log"; exit 1; }
}

stop_presenced() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  # Forget it, so that cleanup never signals a process that reused the pid.
  local kept=()
  for pid in "${pids[@]}"; do [ "$pid" = "$server_pid" ] || kept+=("$pid"); done
  pids=("${kept[@]}")
}

# A loopback TCP port that is free now (the kernel picks it).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
