#!/usr/bin/env bash
# The fuzz harnesses of tests/fuzz built with GCC under ASan and UBSan into
# ${ASAN_BUILD_DIR:-build-asan}, each run over its seed corpus and its crash reproducers: the
# parsers' sanitizer check that scripts/test.sh runs after the test suite (docs/dev/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S tests/fuzz -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DMICRODIT_FUZZ_ENGINE=replay
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
status=0
for harness in "$BUILD_DIR"/fuzz_*; do
  name=${harness##*/fuzz_}
  inputs=(tests/fuzz/corpus/"$name")
  [ -d tests/fuzz/crashes/"$name" ] && inputs+=(tests/fuzz/crashes/"$name")
  if ! "$harness" "${inputs[@]}"; then
    echo "fuzz replay: $name: a finding (above); reproduce with $harness ${inputs[*]}" >&2
    status=1
  fi
done
exit $status
