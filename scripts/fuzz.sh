#!/usr/bin/env bash
# libFuzzer campaigns over the parsers of outside input (tests/fuzz), for developers: Debian's
# clang (installed here when missing; CI needs none), -fsanitize=fuzzer,address,undefined, into
# ${FUZZ_BUILD_DIR:-build-fuzz}. Usage: scripts/fuzz.sh [SECONDS per harness (120)] [HARNESS...]
# Each harness starts from a copy of tests/fuzz/corpus/<name> in build-fuzz/corpus/<name>, where
# what it finds new stays, and a crash is copied to tests/fuzz/crashes/<name>/ to be fixed and
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
# clang and its sanitizer and libFuzzer runtimes (libclang-rt-N-dev, only recommended by clang).
have_libfuzzer() {
  command -v clang++ >/dev/null &&
    [ -f "$(clang++ -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a" ]
}
if ! have_libfuzzer; then
  echo "fuzz: installing clang and its runtimes (Debian)"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends clang
  version=$(clang++ -dumpversion | cut -d. -f1)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "libclang-rt-$version-dev"
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
  cp tests/fuzz/corpus/"$name"/* "$corpus"/  # libFuzzer adds to the folder it is given
  log="$BUILD_DIR/$name.log"
  start=$(date +%s)
  # A finding ends the campaign (libFuzzer's default) with a non-zero status; the next one runs.
  "$BUILD_DIR/fuzz_$name" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || true
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
