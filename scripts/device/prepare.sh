#!/usr/bin/env bash
# Run HERE before a GPU call: copies what the GPU checks need but that does not travel with the
# checkout (../shared stays behind) into .device/ (git-ignored), to be named in the run's `carry`.
#   scripts/device/prepare.sh [PATH-TO-micro_diffusion-GIT-DIR]
# The official model code (SonyResearch/micro_diffusion, models/dit.py and utils.py) is copied only
# into .device/peer/md/ for the side-by-side timing; it is never committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
rm -rf .device && mkdir -p .device/peer/md
cp -r "$SHARED/reference" .device/reference
cp "$SHARED/tools/bench_official.py" .device/peer/
if [ $# -ge 1 ]; then
  for f in dit.py utils.py; do
    git --git-dir="$1" show "HEAD:micro_diffusion/models/$f" > ".device/peer/md/$f"
  done
  touch .device/peer/md/__init__.py
fi
du -sh .device
