#!/usr/bin/env bash
# The project's test command: install what is missing, build, run the test suite through ctest,
# then replay the parsers' fuzz corpora under ASan and UBSan (scripts/fuzz_replay.sh; skipped
# with FUZZ_REPLAY=0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure
if [ "${FUZZ_REPLAY:-1}" != 0 ]; then
  scripts/fuzz_replay.sh
fi
