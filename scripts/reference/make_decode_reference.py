#!/usr/bin/env python3
"""Reference data for the tar / WebDataset reader (tests/test_tar_reader.cpp) and the image
decoder (tests/test_image_decode.cpp), from Python's `tarfile` and Pillow. Needs Pillow, numpy
and safetensors (the project's reference venv has them):

    /opt/refenv/bin/python scripts/reference/make_decode_reference.py

Writes
  tests/data/tar/*.tar       WebDataset-style shards in the ustar, GNU and pax formats, and a GNU
                             archive whose size field is in base-256;
  tests/data/tar/wds_pax.tar.gz, wds_gnu.tar.zst  two of them compressed (gzip with mtime 0;
                             the zstd command line, as Python 3.11's tarfile has no zstd);
  tests/data/tar/damaged/oversize.tar{,.gz}  a member declaring 4 GiB in a small archive;
  tests/data/tar/expected.json  per archive: the regular members as `tarfile` lists them (name,
                             size, SHA-1), the WebDataset samples (key, extensions) and how many
                             regular members were skipped for having no usable extension;
  tests/data/decode/*        small PNG (every color type and bit depth, all five filters,
                             Adam7), JPEG (one with EXIF orientation 6, one CMYK, one whose scan
                             data is damaged: libjpeg warns, Pillow decodes it) and BMP files;
  tests/data/decode/bomb_*.png  headers over Pillow's pixel limit (no expected output);
  tests/data/decode/expected.safetensors  for each other image file name,
                             np.asarray(Image.open(f).convert('RGB')) as (H,W,3) uint8.
"""
import gzip
import hashlib
import io
import json
import pathlib
import re
import struct
import subprocess
import tarfile
import zlib

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data"


# ----------------------------------------------------------------------------------------------
# Tar archives


def payload(name, size):
    """Deterministic member bytes: the name repeated, cut to `size`."""
    seed = (name + "|").encode()
    return (seed * (size // len(seed) + 1))[:size]


# (name, size) of the regular files every archive holds, in archive order. Sizes around the
# 512-byte block exercise the padding; 0 is an empty member.
COMMON = [
    ("00000.jpg", 300), ("00000.txt", 12),
    ("00001.png", 512), ("00001.txt", 0),
    ("dir/00002.json", 513), ("dir/00002.txt", 20),
    ("README", 7),                       # no extension: skipped
    (".hidden", 5),                      # basename starts with '.': skipped
    ("dir/.DS_Store", 6),                # likewise inside a directory
    ("00003.SEG.PNG", 40), ("00003.Txt", 9),   # extensions are lowercased
    ("00004.tar.gz", 30), ("00004.txt", 10),   # extension = everything after the first '.'
    ("00005.txt", 8), ("00005.txt", 9),  # a repeated extension starts a new sample
    ("00006.v1.2/x.txt", 11),            # dots in the directory part belong to the key
]
# Names longer than 100 bytes: ustar splits them into prefix + name, GNU writes an 'L' entry,
# pax an 'x' header.
LONG_SPLITTABLE = "long/" + "d" * 60 + "/" + "e" * 60 + "/00007.txt"
LONG_UNSPLITTABLE = "f" * 120 + "/00008.json"
PAX_ONLY = "unicodé/00009.txt"        # non-ASCII: pax writes the path as a UTF-8 record


def add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def add_special(tar, name, kind, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mtime = 1_700_000_000
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    tar.addfile(info)


def write_tar(path, fmt, extra_names, pax_headers=None):
    with tarfile.open(path, "w", format=fmt, pax_headers=pax_headers or {}) as tar:
        add_special(tar, "dir/", tarfile.DIRTYPE)
        for name, size in COMMON:
            add_file(tar, name, payload(name, size))
        add_special(tar, "link.txt", tarfile.SYMTYPE, "00000.txt")
        add_special(tar, "hard.txt", tarfile.LNKTYPE, "00000.txt")
        if fmt != tarfile.USTAR_FORMAT:  # a link target > 100 bytes: GNU 'K', pax linkpath
            add_special(tar, "longlink.txt", tarfile.SYMTYPE, "t" * 150)
        for name in extra_names:
            add_file(tar, name, payload(name, 33))


def make_base256(src, dst):
    """Rewrites the size field of every regular member header in GNU base-256 form (0x80 then
    big-endian bytes), as GNU tar does for sizes of 8 GiB and more, and fixes the checksums."""
    raw = bytearray(src.read_bytes())
    pos = 0
    while pos + 512 <= len(raw) and any(raw[pos:pos + 512]):
        header = raw[pos:pos + 512]
        size = int(header[124:136].rstrip(b"\0 ").decode() or "0", 8)
        if header[156:157] in (b"0", b"\0"):
            header[124:136] = b"\x80" + size.to_bytes(11, "big")
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\0 " % sum(header)
            raw[pos:pos + 512] = header
        pos += 512 + (size + 511) // 512 * 512
    dst.write_bytes(bytes(raw))


def make_oversize(out):
    """A one-member ustar archive whose header declares 4 GiB (octal 40000000000) for 5 bytes of
    data, plain and gzipped: readers must refuse it without allocating what it claims."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        add_file(tar, "00000.txt", b"small")
    header = bytearray(buffer.getvalue())
    header[124:136] = b"%011o\0" % (4 << 30)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    (out / "oversize.tar").write_bytes(bytes(header))
    (out / "oversize.tar.gz").write_bytes(gzip.compress(bytes(header), mtime=0))


# WebDataset's key/extension split (webdataset.tariterators.base_plus_ext and group_by_keys with
# lcase=True): key = path up to the first '.' of the basename, extension = the rest, lowercased;
# a new sample starts when the key changes or an extension repeats. The C++ reader also skips
# basenames starting with '.', which the regex would turn into key "dir/" for "dir/.DS_Store".
WDS_RE = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def webdataset_listing(members):
    samples, skipped = [], 0
    for name, _ in members:
        match = WDS_RE.match(name)
        if match is None or name.rsplit("/", 1)[-1].startswith("."):
            skipped += 1
            continue
        key, ext = match.group(1), match.group(2).lower()
        if not samples or samples[-1]["key"] != key or ext in samples[-1]["extensions"]:
            samples.append({"key": key, "extensions": []})
        samples[-1]["extensions"].append(ext)
    return samples, skipped


def zstd(data, *args):
    return subprocess.run(["zstd", "-q", "-c", *args], input=data, check=True,
                          capture_output=True).stdout


def listing(path):
    # tarfile reads gzip itself; Python 3.11 has no zstd, so those are decompressed first.
    raw = zstd(path.read_bytes(), "-d") if path.suffix == ".zst" else path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
    samples, skipped = webdataset_listing(members)
    return {
        "members": [{"name": n, "size": len(d), "sha1": hashlib.sha1(d).hexdigest()}
                    for n, d in members],
        "samples": samples,
        "skipped": skipped,
    }


def make_tars():
    out = DATA / "tar"
    out.mkdir(parents=True, exist_ok=True)
    write_tar(out / "wds_ustar.tar", tarfile.USTAR_FORMAT, [LONG_SPLITTABLE])
    write_tar(out / "wds_gnu.tar", tarfile.GNU_FORMAT, [LONG_SPLITTABLE, LONG_UNSPLITTABLE])
    write_tar(out / "wds_pax.tar", tarfile.PAX_FORMAT,
              [LONG_SPLITTABLE, LONG_UNSPLITTABLE, PAX_ONLY], pax_headers={"comment": "global"})
    make_base256(out / "wds_gnu.tar", out / "gnu_base256.tar")
    (out / "wds_pax.tar.gz").write_bytes(gzip.compress((out / "wds_pax.tar").read_bytes(), mtime=0))
    (out / "wds_gnu.tar.zst").write_bytes(zstd((out / "wds_gnu.tar").read_bytes(), "-19"))
    make_oversize(out / "damaged")
    archives = [*out.glob("*.tar"), *out.glob("*.tar.gz"), *out.glob("*.tar.zst")]
    expected = {p.name: listing(p) for p in sorted(archives)}
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(expected)} archives to {out}")


# ----------------------------------------------------------------------------------------------
# Images


def pattern(h, w, channels, seed, maximum=255):
    """Smooth ramps plus some noise: compressible, but every pixel value matters."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [xx / max(w - 1, 1), yy / max(h - 1, 1), (xx + yy) / max(h + w - 2, 1), 1 - xx / w]
    smooth = np.stack(planes[:channels], -1) * maximum
    noise = rng.integers(0, maximum + 1, (h, w, channels))
    mixed = np.where(rng.random((h, w, 1)) < 0.3, noise, smooth)
    return mixed.astype(np.uint16 if maximum > 255 else np.uint8)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(rows, width, height, depth, color_type, interlace=0, idat_parts=1, chunks=b""):
    """A PNG from already filtered scanlines (each starting with its filter byte); `chunks` (e.g.
    PLTE, tRNS) go between IHDR and IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    stream = zlib.compress(b"".join(rows), 9)
    cut = [len(stream) * i // idat_parts for i in range(idat_parts + 1)]
    idats = b"".join(chunk(b"IDAT", stream[a:b]) for a, b in zip(cut, cut[1:]))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunks + idats +
            chunk(b"IEND", b""))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_rows(lines, bpp, filters):
    """PNG filtering (PNG spec 9.2) of byte rows, row i with filter type filters[i]."""
    out, prior = [], bytes(len(lines[0]))
    for line, ftype in zip(lines, filters):
        res = bytearray()
        for i, x in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ftype]
            res.append((x - pred) & 0xFF)
        out.append(bytes([ftype]) + bytes(res))
        prior = line
    return out


def pack_bits(values, depth):
    """Packs one row of small integers MSB first, as PNG stores bit depths below 8."""
    per_byte = 8 // depth
    padded = list(values) + [0] * (-len(values) % per_byte)
    out = bytearray()
    for i in range(0, len(padded), per_byte):
        byte = 0
        for v in padded[i:i + per_byte]:
            byte = (byte << depth) | int(v)
        out.append(byte)
    return bytes(out)


def sample_lines(arr, depth):
    """The unfiltered scanlines of arr (H,W,C) of samples (one channel below 8 bits)."""
    if depth < 8:
        return [pack_bits(arr[y, :, 0], depth) for y in range(arr.shape[0])]
    return [arr[y].astype(">u2" if depth == 16 else "u1").tobytes() for y in range(arr.shape[0])]


def png_all_filters(arr, depth, color_type):
    """arr (H,W,C) of samples; rows use filter types 0,1,2,3,4,0,... in turn."""
    h, w, c = arr.shape
    bpp = max(1, c * depth // 8)
    return raw_png(filter_rows(sample_lines(arr, depth), bpp, [y % 5 for y in range(h)]), w, h,
                   depth, color_type, idat_parts=3)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]  # (x0, y0, dx, dy) of the seven passes


def png_adam7(arr):
    h, w, _ = arr.shape
    rows = []
    for x0, y0, dx, dy in ADAM7:
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            rows += [b"\0" + sub[y].tobytes() for y in range(sub.shape[0])]
    return raw_png(rows, w, h, 8, 2, interlace=1)


def png_adam7_filtered(arr, depth, color_type, chunks=b""):
    """Adam7 at any bit depth and color type: each pass is a small image of its own, packed and
    filtered (types 0,1,2,3,4,0,... in turn) from a zero prior row."""
    h, w, c = arr.shape
    rows = []
    for x0, y0, dx, dy in ADAM7:
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            lines = sample_lines(sub, depth)
            rows += filter_rows(lines, max(1, c * depth // 8), [y % 5 for y in range(len(lines))])
    return raw_png(rows, w, h, depth, color_type, interlace=1, idat_parts=2, chunks=chunks)


def palette_chunks(entries, transparent):
    """PLTE with `entries` colors and tRNS making the first `transparent` of them see-through."""
    rng = np.random.default_rng(10)
    plte = rng.integers(0, 256, (entries, 3), dtype=np.uint8).tobytes()
    return chunk(b"PLTE", plte) + chunk(b"tRNS", bytes(range(transparent)))


def pil_bytes(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def exif_orientation_6():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return exif


def corrupt_scan_jpeg():
    """A 64x64 JPEG of noise whose entropy-coded data is damaged but ends in EOI: libjpeg only
    warns ("Corrupt JPEG data: ...") and decodes on, and Pillow ignores its warnings. Every 53rd
    byte from offset 700 becomes 0xD5 (never right after an 0xFF, so no marker appears), and a
    stray RST6 marker stands at offset 800."""
    rng = np.random.default_rng(19)
    data = bytearray(pil_bytes(Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)),
                               "JPEG"))
    sos = data.index(b"\xff\xda")
    assert sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big") < 700 < 900 < len(data)
    for i in range(700, len(data) - 2, 53):
        if data[i - 1] != 0xFF:
            data[i] = 0xD5
    data[800:802] = b"\xff\xd6"
    return bytes(data)


def images():
    rgb = pattern(24, 32, 3, 0)
    rgb_small = pattern(9, 13, 3, 1)
    palette16 = Image.fromarray(rgb).quantize(16)     # Pillow saves <= 16 colors as 4-bit
    palette4 = Image.fromarray(rgb_small).quantize(4)  # 2-bit
    palette_trns = Image.fromarray(rgb_small).quantize(200)
    palette_trns.info["transparency"] = 3
    return {
        "gray_L.png": pil_bytes(Image.fromarray(pattern(9, 13, 1, 2)[..., 0]), "PNG"),
        "gray_LA.png": pil_bytes(Image.fromarray(pattern(9, 13, 2, 3), "LA"), "PNG"),
        "rgb.png": pil_bytes(Image.fromarray(rgb), "PNG"),
        "rgba.png": pil_bytes(Image.fromarray(pattern(24, 32, 4, 4), "RGBA"), "PNG"),
        "palette_8bit_trns.png": pil_bytes(palette_trns, "PNG"),
        "palette_4bit.png": pil_bytes(palette16, "PNG"),
        "palette_2bit.png": pil_bytes(palette4, "PNG"),
        "gray16.png": pil_bytes(Image.fromarray(pattern(9, 13, 1, 5, 65535)[..., 0]), "PNG"),
        "bilevel.png": pil_bytes(Image.fromarray(rgb_small).convert("1"), "PNG"),
        "filters_rgb.png": png_all_filters(rgb_small, 8, 2),
        "filters_rgba16.png": png_all_filters(pattern(9, 13, 4, 6, 65535), 16, 6),
        "filters_la16.png": png_all_filters(pattern(9, 13, 2, 7, 65535), 16, 4),
        "filters_gray2.png": png_all_filters(pattern(9, 13, 1, 8, 3), 2, 0),
        "filters_gray4.png": png_all_filters(pattern(9, 13, 1, 9, 15), 4, 0),
        "interlaced.png": png_adam7(rgb_small),
        # Adam7 at other depths and color types; 11x13 leaves some passes' last row or column
        # short, 3x2 leaves passes empty. Indices 12-15 of the 4-bit palette image are past its
        # 12-entry palette; 16-bit gray up to 511 straddles the clip at 255.
        "interlaced_gray1.png": png_adam7_filtered(pattern(11, 13, 1, 11, 1), 1, 0),
        "interlaced_gray2.png": png_adam7_filtered(pattern(11, 13, 1, 12, 3), 2, 0),
        "interlaced_palette4_trns.png": png_adam7_filtered(
            pattern(11, 13, 1, 13, 15), 4, 3, palette_chunks(12, 3)),
        "interlaced_gray16.png": png_adam7_filtered(pattern(11, 13, 1, 14, 511), 16, 0),
        "interlaced_la16.png": png_adam7_filtered(pattern(11, 13, 2, 15, 65535), 16, 4),
        "interlaced_rgb.png": png_adam7_filtered(pattern(11, 13, 3, 16), 8, 2),
        "interlaced_rgba16.png": png_adam7_filtered(pattern(11, 13, 4, 17, 65535), 16, 6),
        "interlaced_la_tiny.png": png_adam7_filtered(pattern(2, 3, 2, 18), 8, 4),
        "rgb_q90.jpg": pil_bytes(Image.fromarray(rgb), "JPEG", quality=90),
        "gray_q90.jpg": pil_bytes(Image.fromarray(rgb).convert("L"), "JPEG", quality=90),
        "exif_orientation6.jpg": pil_bytes(Image.fromarray(rgb), "JPEG", quality=90,
                                           exif=exif_orientation_6()),
        # Adobe CMYK: Pillow reads it inverted (CMYK;I) and converts CMYK -> RGB itself.
        "cmyk_q90.jpg": pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90),
        "corrupt_scan.jpg": corrupt_scan_jpeg(),
        "rgb.bmp": pil_bytes(Image.fromarray(rgb_small), "BMP"),
    }


def hostile_images():
    """PNGs whose headers claim more pixels than Pillow opens (DecompressionBombError), with a
    few bytes of image data: the decoder must refuse them before allocating."""
    return {
        "bomb_60000x60000.png": raw_png([bytes(61)], 60000, 60000, 8, 0),
        "bomb_2147483647x1.png": raw_png([bytes(61)], 2**31 - 1, 1, 8, 0),
    }


def make_images():
    out = DATA / "decode"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in hostile_images().items():
        (out / name).write_bytes(data)
    expected = {}
    for name, data in images().items():
        (out / name).write_bytes(data)
        with Image.open(out / name) as im:
            expected[name] = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    save_file(expected, out / "expected.safetensors")
    print(f"wrote {len(expected)} images to {out}")


if __name__ == "__main__":
    make_tars()
    make_images()
