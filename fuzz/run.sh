#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each one on its
# corpus for a while. See fuzz/README.md.
#
#   fuzz/run.sh [SECONDS]           replay fuzz/regressions/<target>/, then fuzz
#                                   each target for SECONDS (default 20);
#                                   0: replay the corpus only, no fuzzing
#   fuzz/run.sh --regenerate-seeds  rewrite the seeds store_seed_generator
#                                   writes into fuzz/corpus/store_recovery_fuzzer/
#
# Environment:
#   BUILD_DIR       build folder (default build-fuzz), configured with
#                   CXX (default clang++-14) if new
#   FUZZERS         the targets to run (default: all, space-separated)
#   FUZZ_ARTIFACTS  where logs, crash inputs and new corpus entries go
#                   (default: a new temporary directory; never the repository)
#   FUZZ_FLAGS      more libFuzzer flags, e.g. "-jobs=2 -workers=2"
#
# Exits 1 if a target crashes, leaks, hangs (10 s per input), runs out of
# memory or violates one of its invariants; the input is in FUZZ_ARTIFACTS.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

seconds=20
regenerate=0
case "${1:-}" in
  --regenerate-seeds) regenerate=1 ;;
  "") ;;
  *[!0-9]*) usage ;;
  *) seconds=$1 ;;
esac
[ $# -le 1 ] || usage

build_dir=${BUILD_DIR:-build-fuzz}
fuzzers=${FUZZERS:-validation_registry_fuzzer store_recovery_fuzzer}

# The options are passed every time: an existing folder may have been
# configured without them. The compiler only counts for a new folder.
CXX=${CXX:-clang++-14} cmake -S . -B "$build_dir" -DPRESENCE_BUILD_FUZZERS=ON \
  -DPRESENCE_BUILD_TESTS=OFF -DPRESENCE_SANITIZE=address,undefined >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target fuzzers

if [ "$regenerate" = 1 ]; then
  # Overwrites the generator's named seeds; inputs libFuzzer found (named by
  # their SHA-1) stay.
  seeds=fuzz/corpus/store_recovery_fuzzer
  mkdir -p "$seeds"
  "$build_dir/bin/store_seed_generator" "$seeds"
  exit 0
fi

# Readable stack traces: Debian's llvm-14 has the symbolizer, unversioned
# only with the `llvm` package.
if ! command -v llvm-symbolizer >/dev/null &&
  [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export PATH="$PATH:/usr/lib/llvm-14/bin"
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

artifacts=${FUZZ_ARTIFACTS:-$(mktemp -d -t presence-fuzz.XXXXXX)}
mkdir -p "$artifacts"
# store_recovery_fuzzer's databases, on tmpfs if there is one. A process
# that crashes leaves its directory behind: all go with this one.
if [ -z "${PRESENCE_FUZZ_TMPDIR:-}" ]; then
  scratch_base=/dev/shm
  [ -w "$scratch_base" ] || scratch_base=${TMPDIR:-/tmp}
  PRESENCE_FUZZ_TMPDIR=$(mktemp -d "$scratch_base/presence-fuzz-run.XXXXXX")
  export PRESENCE_FUZZ_TMPDIR
  trap 'rm -rf "$PRESENCE_FUZZ_TMPDIR"' EXIT
fi
failed=()
summary=()

# Prints the report of a failed run: from the first line that says what
# went wrong, and where libFuzzer saved the input.
report() {
  local log=$1
  local first
  first=$(grep -n -m1 -E 'ERROR: |runtime error|invariant violated|Timeout|out-of-memory' "$log" |
    cut -d: -f1 || true)
  if [ -n "$first" ]; then
    tail -n +"$first" "$log" | grep -v -E '^\s+#[0-9]+ .* in fuzzer::' | head -60
  else
    tail -40 "$log"
  fi
}

for fuzzer in $fuzzers; do
  bin=$build_dir/bin/$fuzzer
  corpus=fuzz/corpus/$fuzzer
  regressions=fuzz/regressions/$fuzzer
  printf '\n== %s\n' "$fuzzer"

  # Inputs that once failed: each must now pass.
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    log=$artifacts/$fuzzer-regressions.log
    if "$bin" "$regressions"/* >"$log" 2>&1; then
      echo "regressions: $(find "$regressions" -type f | wc -l) inputs pass"
    else
      echo "regressions: FAILED on $(sed -n 's/^Running: //p' "$log" | tail -1)"
      report "$log"
      failed+=("$fuzzer (regressions)")
      summary+=("$fuzzer: regression input fails")
      continue
    fi
  fi

  # New inputs go to a scratch directory (libFuzzer writes to the first one
  # it is given); the committed corpus is only read.
  work=$(mktemp -d "$artifacts/$fuzzer-new.XXXXXX")
  if [ "$seconds" = 0 ]; then
    mode=(-runs=0)
  else
    mode=(-max_total_time="$seconds")
  fi
  log=$artifacts/$fuzzer.log
  # shellcheck disable=SC2086  # FUZZ_FLAGS is a list of flags
  if "$bin" "${mode[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$fuzzer-" ${FUZZ_FLAGS:-} "$work" "$corpus" \
    >"$log" 2>&1; then
    status=ok
  else
    status=failed
  fi
  grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -1 || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  if [ "$status" = failed ]; then
    echo "FAILED ($log)"
    report "$log"
    failed+=("$fuzzer")
    summary+=("$fuzzer: FAILED after ${runs:-?} executions")
  else
    summary+=("$fuzzer: ${runs:-?} executions in ${seconds} s (${rate:-?} exec/s), ${added:-0} new inputs, no crash")
  fi
done

printf '\n== summary\n'
printf '%s\n' "${summary[@]}"
echo "logs and inputs: $artifacts"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
