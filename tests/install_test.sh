#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds tests/consumer
# against it with find_package(presence), and runs it against a presenced
# from that prefix.
set -euo pipefail
build_dir=$1 source_dir=$2 sanitize=${3:-}
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" || true
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
flags=()
if [ -n "$sanitize" ]; then
  flags+=("-DCMAKE_CXX_FLAGS=-fsanitize=$sanitize" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitize")
fi
cmake -S "$source_dir/tests/consumer" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${flags[@]}" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"

"$work/prefix/bin/presenced" --listen=127.0.0.1:0 --db="$work/p.db" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "serving on" "$work/server.log" && break
  # Poll the log for the line presenced prints once it listens.
  sleep 0.1
done
address=$(sed -n 's/.*serving on \([^ ]*\).*/\1/p' "$work/server.log")
[ -n "$address" ] || { cat "$work/server.log"; exit 1; }
"$work/build/consumer" "$address"
"$work/prefix/bin/presencectl" --server="$address" list | grep -qx 42
echo "install test: find_package(presence) consumer built and answered"
