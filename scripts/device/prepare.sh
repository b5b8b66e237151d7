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
# The CLIP tokenizer needs PCRE2, whose headers the GPU machine lacks (its build then leaves the
# tokenizer out and two CUDA tests skip): this machine's header and library (x86-64, the same
# ABI) with a pkg-config file that finds them wherever .device lands; gpu_checks.sh adds it to
# PKG_CONFIG_PATH.
if pkg-config --exists libpcre2-8 2>/dev/null; then
  mkdir -p .device/pcre2/include .device/pcre2/lib/pkgconfig
  cp "$(pkg-config --variable=includedir libpcre2-8)/pcre2.h" .device/pcre2/include/
  for name in libpcre2-8.so libpcre2-8.so.0; do  # copies, not links: links travel as links
    cp -L "$(pkg-config --variable=libdir libpcre2-8)/libpcre2-8.so.0" ".device/pcre2/lib/$name"
  done
  cat > .device/pcre2/lib/pkgconfig/libpcre2-8.pc <<PC
prefix=\${pcfiledir}/../..
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: libpcre2-8
Description: PCRE2 8-bit, carried from the development machine by scripts/device/prepare.sh
Version: $(pkg-config --modversion libpcre2-8)
Libs: -L\${libdir} -lpcre2-8
Cflags: -I\${includedir}
PC
fi
du -sh .device
