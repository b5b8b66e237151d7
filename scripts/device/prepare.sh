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
# Libraries whose -dev packages the GPU machine lacks (it has no network to install them): this
# machine's headers and libraries (Debian 12, x86-64; glibc 2.36, older than the GPU machine's,
# so they run there) under .device/deps with pkg-config files that find them wherever .device
# lands; gpu_checks.sh puts .device/deps/lib/pkgconfig first on PKG_CONFIG_PATH.
#   every build: nlohmann-json (headers), libspng (shared: Debian ships no static one),
#     libmd (static), xxHash (headers; used header-only);
#   optional: PCRE2 (the CLIP tokenizer; without it two CUDA tests skip), libarchive (static;
#     needs zlib, zstd, xz, bzip2 and nettle, which the GPU machine's base system carries; the
#     build leaves it out if they do not link), libjpeg (libjpeg-turbo, static: JPEG images;
#     jconfig.h is Debian's x86-64 one, beside the other headers here).
# Copies, not links: links travel as links.
DEPS=.device/deps
LIB=/usr/lib/x86_64-linux-gnu
mkdir -p "$DEPS/include" "$DEPS/lib/pkgconfig"
pc() {  # pc NAME VERSION LIBS: a pkg-config file relative to its own folder
  cat > "$DEPS/lib/pkgconfig/$1.pc" <<PC
prefix=\${pcfiledir}/../..
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: $1
Description: carried from the development machine by scripts/device/prepare.sh
Version: $2
Libs: $3
Cflags: -I\${includedir}
PC
}
version() { dpkg-query -W -f='${Version}' "$1"; }
cp -r /usr/include/nlohmann "$DEPS/include/"
pc nlohmann_json "$(version nlohmann-json3-dev)" ""
cp /usr/include/spng.h "$DEPS/include/"
cp -L "$LIB/libspng.so.0" "$DEPS/lib/libspng.so.0"
cp -L "$LIB/libspng.so.0" "$DEPS/lib/libspng.so"
pc spng "$(version libspng-dev)" "-L\${libdir} -lspng"
cp /usr/include/md5.h /usr/include/sha1.h "$DEPS/include/"
cp "$LIB/libmd.a" "$DEPS/lib/"
pc libmd "$(version libmd-dev)" "-L\${libdir} -lmd"
cp /usr/include/xxhash.h /usr/include/xxh3.h "$DEPS/include/"
pc libxxhash "$(version libxxhash-dev)" ""
cp /usr/include/pcre2.h "$DEPS/include/"
cp -L "$LIB/libpcre2-8.so.0" "$DEPS/lib/libpcre2-8.so.0"
cp -L "$LIB/libpcre2-8.so.0" "$DEPS/lib/libpcre2-8.so"
pc libpcre2-8 "$(version libpcre2-dev)" "-L\${libdir} -lpcre2-8"
cp /usr/include/archive.h /usr/include/archive_entry.h "$DEPS/include/"
cp "$LIB/libarchive.a" "$DEPS/lib/"
pc libarchive "$(version libarchive-dev)" \
  "-L\${libdir} -larchive -l:libz.so.1 -l:libzstd.so.1 -l:liblzma.so.5 -l:libbz2.so.1.0 -l:libnettle.so.8"
cp /usr/include/jpeglib.h /usr/include/jmorecfg.h /usr/include/jerror.h \
  /usr/include/x86_64-linux-gnu/jconfig.h "$DEPS/include/"
cp "$LIB/libjpeg.a" "$DEPS/lib/"
pc libjpeg "$(version libjpeg62-turbo-dev)" "-L\${libdir} -ljpeg"
du -sh .device
