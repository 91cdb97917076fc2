#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, checks that the prefix
# holds the binaries and the systemd units, builds tests/consumer against it
# with find_package(presence), and runs it against a presenced from that
# prefix.
set -euo pipefail
build_dir=$1 source_dir=$2 sanitize=${3:-}
work=$(mktemp -d)
bin=$work/prefix/bin
source "$source_dir/tools/bench/common.sh"  # start_presenced, cleanup
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
for program in presenced presencectl presence-rest; do
  [ -x "$bin/$program" ] || { echo "install test: $bin/$program not installed" >&2; exit 1; }
done
# The units are written at install time, so ExecStart names this prefix.
units=$work/prefix/lib/systemd/system
for program in presenced presence-rest; do
  unit=$units/$program.service
  [ -f "$unit" ] || { echo "install test: $unit not installed" >&2; exit 1; }
  grep -q "^ExecStart=$bin/$program " "$unit" ||
    { echo "install test: $unit does not start $bin/$program" >&2; exit 1; }
done
if command -v systemd-analyze > /dev/null; then
  # Silent when the units are valid; it also checks that ExecStart exists.
  if ! verify=$(systemd-analyze verify --man=no "$units/presenced.service" \
      "$units/presence-rest.service" 2>&1) || [ -n "$verify" ]; then
    echo "install test: systemd-analyze verify: $verify" >&2
    exit 1
  fi
else
  echo "install test: no systemd-analyze; the units' syntax is not checked"
fi
flags=()
if [ -n "$sanitize" ]; then
  flags+=("-DCMAKE_CXX_FLAGS=-fsanitize=$sanitize" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitize")
fi
cmake -S "$source_dir/tests/consumer" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${flags[@]}" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"

start_presenced --db="$work/p.db"
"$work/build/consumer" "$address"
"$bin/presencectl" --server="$address" list | grep -qx 42
echo "install test: find_package(presence) consumer built and answered"
