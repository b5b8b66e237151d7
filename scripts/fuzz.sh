#!/usr/bin/env bash
# libFuzzer campaigns over the parsers of outside input (tests/fuzz), for developers: Debian's
# clang (installed here when missing; CI needs none), -fsanitize=fuzzer,address,undefined, into
# ${FUZZ_BUILD_DIR:-build-fuzz}. Usage: scripts/fuzz.sh [SECONDS per harness (120)] [HARNESS...]
# Each harness starts from tests/fuzz/corpus/<name>; what it finds new stays in
# build-fuzz/corpus/<name>, and a crash is copied to tests/fuzz/crashes/<name>/ to be fixed and
# committed (the replay runs it from then on). Ends with one row per harness: name, seconds,
# executions, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-120}
shift $(( $# > 0 ? 1 : 0 ))
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v clang++ >/dev/null; then
  echo "fuzz: installing clang (Debian)"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends clang
fi
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S tests/fuzz -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
    -DMICRODIT_FUZZ_ENGINE=libfuzzer
fi
cmake --build "$BUILD_DIR" -j "$JOBS"

export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for harness in "$BUILD_DIR"/fuzz_*; do names+=("${harness##*/fuzz_}"); done
fi
rows=()
for name in "${names[@]}"; do
  corpus="$BUILD_DIR/corpus/$name" artifacts="$BUILD_DIR/artifacts/$name"
  mkdir -p "$corpus" "$artifacts"
  log="$BUILD_DIR/$name.log"
  start=$(date +%s)
  # A finding ends the campaign (libFuzzer's default) with a non-zero status; the next one runs.
  "$BUILD_DIR/fuzz_$name" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1 || true
  seconds=$(( $(date +%s) - start ))
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=0
  for artifact in "$artifacts"/*; do
    [ -e "$artifact" ] || continue
    mkdir -p "tests/fuzz/crashes/$name"
    cp "$artifact" "tests/fuzz/crashes/$name/"
    rm "$artifact"
    found=$((found + 1))
  done
  [ "$found" -gt 0 ] && echo "fuzz: $name: $found finding(s), see $log and tests/fuzz/crashes/$name/" >&2
  rows+=("| $name | $seconds | ${executions:-?} | $found |")
done
echo "| harness | seconds | executions | crashes |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
