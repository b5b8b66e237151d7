#!/usr/bin/env bash
# Runs a command as on the lent GPU machine, whose image lacks the -dev packages of the format
# libraries: in a private mount namespace, their headers, link-time libraries and pkg-config
# files (and libspng's shared library) are hidden by overlay whiteouts, so a build there finds
# only what scripts/device/prepare.sh carried in .device/deps. Needs root (unshare, mount).
#   scripts/device/without_dev_packages.sh bash scripts/device/gpu_checks.sh
set -euo pipefail
LIB=/usr/lib/x86_64-linux-gnu
HIDE=(
  /usr/include/nlohmann /usr/include/spng.h /usr/include/md5.h /usr/include/sha1.h
  /usr/include/xxhash.h /usr/include/xxh3.h /usr/include/xxh_x86dispatch.h /usr/include/archive.h
  /usr/include/archive_entry.h /usr/include/pcre2.h
  $LIB/libspng.so $LIB/libspng.so.0 $LIB/libmd.so $LIB/libmd.a $LIB/libarchive.so
  $LIB/libarchive.a $LIB/libxxhash.so $LIB/libxxhash.a $LIB/libpcre2-8.so
  $LIB/pkgconfig/spng.pc $LIB/pkgconfig/libmd.pc $LIB/pkgconfig/libarchive.pc
  $LIB/pkgconfig/libxxhash.pc $LIB/pkgconfig/libpcre2-8.pc
  /usr/share/pkgconfig/nlohmann_json.pc /usr/share/cmake/nlohmann_json
)
ROOTS=(/usr/include "$LIB" /usr/share)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for i in "${!ROOTS[@]}"; do mkdir -p "$WORK/up$i" "$WORK/work$i"; done
for path in "${HIDE[@]}"; do
  for i in "${!ROOTS[@]}"; do
    [[ $path == "${ROOTS[$i]}"/* ]] || continue
    rel=${path#"${ROOTS[$i]}"/}
    mkdir -p "$WORK/up$i/$(dirname "$rel")"
    mknod "$WORK/up$i/$rel" c 0 0  # an overlay whiteout: the path does not exist there
    break
  done
done
mounts=""
for i in "${!ROOTS[@]}"; do
  mounts+="mount -t overlay overlay -o lowerdir=${ROOTS[$i]},upperdir=$WORK/up$i,workdir=$WORK/work$i ${ROOTS[$i]} && "
done
unshare -m bash -c "${mounts}exec \"\$@\"" - "$@"
