#!/usr/bin/env bash
# Configures and builds into ${BUILD_DIR:-build} with Ninja and ccache: everything, or only the
# targets named in TARGETS (e.g. TARGETS=microdit-train). Arguments go to the first configure.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
# shellcheck disable=SC2086  # TARGETS is a list of target names
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS}
