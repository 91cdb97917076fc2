#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds tests/consumer
# against it with find_package(presence), and runs it against a presenced
# from that prefix.
set -euo pipefail
build_dir=$1 source_dir=$2 sanitize=${3:-}
work=$(mktemp -d)
bin=$work/prefix/bin
source "$source_dir/tools/bench/common.sh"  # start_presenced, cleanup
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
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
