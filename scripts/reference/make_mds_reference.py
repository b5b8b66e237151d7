#!/usr/bin/env python3
"""Writes the MosaicML Streaming (MDS) fixtures of tests/test_mds.cpp with the reference writer,
and checks a directory written by our C++ MDSWriter with the reference reader.

    python make_mds_reference.py                      # regenerates tests/data/mds/
    python make_mds_reference.py --check DIR --like plain|zstd|merged

Needs mosaicml-streaming (pip install mosaicml-streaming; it pulls in torch, zstd and xxhash).

Fixtures (tests/data/mds/):
  plain/     the official columns at tiny shapes (caption str, caption_latents fp16 [7,8] and
             latents_256 fp16 [4,4,4] as bytes) plus one column of every other encoding the C++
             reader decodes; 3 shards (small size_limit), hashes md5, sha1, xxh32, xxh64,
             uncompressed
  zstd/      the same samples, compression "zstd", hashes sha1, xxh64
  merged/    the official preparation's layout: writers in 0/ and 1/ (official columns, no hashes,
             no compression) and a top index.json from streaming's merge_index
  expected.json  the writer settings and every sample's decoded value (zstd: "samples_from"
             names the fixture whose samples it holds):
             {"text": str} for str, json and str_decimal; {"hex": bytes} for bytes;
             {"int": n} for int and str_int; {"float_hex": little-endian float64 bytes} for
             str_float; {"dtype", "shape", "hex": C-order little-endian values} for the numeric
             scalars (shape []) and ndarray

--check reads DIR with streaming's StreamingDataset, verifies every hash listed in its
index.json, and compares each decoded sample with the samples of fixture --like.
"""
import argparse
import decimal
import hashlib
import json
import math
import pathlib
import shutil
import struct
import sys
import tempfile

import numpy as np
import xxhash

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "mds"

PLAIN_COLUMNS = {
    "caption": "str",
    "caption_latents": "bytes",  # fp16 [7,8]
    "latents_256": "bytes",  # fp16 [4,4,4]
    "id": "int",
    "u8": "uint8",
    "u16": "uint16",
    "u32": "uint32",
    "u64": "uint64",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "f16": "float16",
    "f32": "float32",
    "f64": "float64",
    "str_int": "str_int",
    "str_float": "str_float",
    "str_decimal": "str_decimal",
    "meta": "json",
    "arr_any": "ndarray",  # dynamic dtype and shape: one sample per dtype code
    "arr_f32": "ndarray:float32",  # static dtype, dynamic shape
    "arr_fixed": "ndarray:int16:2,3",  # static dtype and shape: a fixed-size column
}
MERGED_COLUMNS = {
    "caption": "str",
    "caption_latents": "bytes",  # fp16 [7,8]
    "latents_256": "bytes",  # fp16 [4,4,4]
    "latents_512": "bytes",  # fp16 [4,8,8]
}
ARRAY_DTYPES = ["uint8", "int8", "uint16", "int16", "float16", "uint32", "int32", "float32",
                "uint64", "int64", "float64"]
CAPTIONS = ["a photo of a cat", "", "caf\u00e9 \u2615 \u65e5\u672c", "quote \" and \\ slash",
            "line\nbreak", "x" * 40, "a dog", "tab\tseparated", "\U0001f600 emoji", "z", "last"]
FLOATS = [0.1, 1e16, 1e-05, 1234.5, -0.0, math.inf, math.nan, 1e300, 1e15, 1.2345678901234568e17,
          -2.5e-7]
PLAIN_SIZE_LIMIT = 3300


def fp16_bytes(rng, shape):
    return rng.standard_normal(shape).astype(np.float16).tobytes()


def plain_samples():
    rng = np.random.default_rng(7)
    samples = []
    for i in range(11):
        dtype = ARRAY_DTYPES[i]
        # Sample 3 has a dimension of 260: its shape is stored as uint16 (shape code 1).
        shape = (260,) if i == 3 else tuple(int(d) for d in rng.integers(1, 4, size=1 + i % 3))
        arr_any = (rng.standard_normal(shape) * 50).astype(dtype)
        samples.append({
            "caption": CAPTIONS[i],
            "caption_latents": fp16_bytes(rng, (7, 8)),
            "latents_256": fp16_bytes(rng, (4, 4, 4)),
            "id": [0, -1, 2**63 - 1, -(2**63), 42][i % 5] + (i if i % 5 == 4 else 0),
            "u8": np.uint8([0, 255, 17][i % 3]),
            "u16": np.uint16([65535, 0, 1234][i % 3]),
            "u32": np.uint32([2**32 - 1, 7, 0][i % 3]),
            "u64": np.uint64([2**64 - 1, 2**63, 5][i % 3]),
            "i8": np.int8([-128, 127, -3][i % 3]),
            "i16": np.int16([-32768, 32767, 9][i % 3]),
            "i32": np.int32([-(2**31), 2**31 - 1, -7][i % 3]),
            "i64": np.int64([-(2**63), 2**63 - 1, 11][i % 3]),
            "f16": np.float16([0.333, -np.inf, 65504.0][i % 3]),
            "f32": np.float32([np.pi, -0.0, 1e-40][i % 3]),
            "f64": np.float64([np.e, np.nan, -1e308][i % 3]),
            "str_int": [0, -(2**63), 2**63 - 1, 12345][i % 4],
            "str_float": FLOATS[i],
            "str_decimal": decimal.Decimal(["3.14159", "-1E+5", "0.000"][i % 3]),
            "meta": {"i": i, "name": CAPTIONS[i], "values": [1, 2.5, None, True]},
            "arr_any": arr_any,
            "arr_f32": rng.standard_normal((1 + i % 2, 2, 1 + i % 3)).astype(np.float32),
            "arr_fixed": rng.integers(-1000, 1000, size=(2, 3)).astype(np.int16),
        })
    return samples


def merged_samples(seed, count):
    rng = np.random.default_rng(seed)
    return [{
        "caption": f"merged caption {seed}.{i}",
        "caption_latents": fp16_bytes(rng, (7, 8)),
        "latents_256": fp16_bytes(rng, (4, 4, 4)),
        "latents_512": fp16_bytes(rng, (4, 8, 8)),
    } for i in range(count)]


def describe(encoding, value):
    """The expected.json form of one decoded value."""
    if encoding in ("str", "str_decimal"):
        return {"text": str(value)}
    if encoding == "json":
        return {"text": json.dumps(value)}
    if encoding == "bytes":
        return {"hex": value.hex()}
    if encoding in ("int", "str_int"):
        return {"int": int(value)}
    if encoding == "str_float":
        return {"float_hex": struct.pack("<d", value).hex()}
    array = np.asarray(value)
    little_endian = array.astype(array.dtype.newbyteorder("<"), order="C")
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "hex": little_endian.tobytes().hex()}


def write(directory, columns, samples, **settings):
    from streaming import MDSWriter
    with MDSWriter(out=str(directory), columns=columns, **settings) as writer:
        for sample in samples:
            writer.write(sample)


def shard_count(directory):
    return len(json.loads((directory / "index.json").read_text())["shards"])


def generate():
    from streaming.base.util import merge_index
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    samples = plain_samples()
    plain = dict(size_limit=PLAIN_SIZE_LIMIT, compression=None,
                 hashes=["md5", "sha1", "xxh32", "xxh64"])
    zstd = dict(size_limit=PLAIN_SIZE_LIMIT, compression="zstd", hashes=["sha1", "xxh64"])
    write(OUT / "plain", PLAIN_COLUMNS, samples, **plain)
    write(OUT / "zstd", PLAIN_COLUMNS, samples, **zstd)
    assert shard_count(OUT / "plain") == 3, shard_count(OUT / "plain")

    parts = [merged_samples(1, 3), merged_samples(2, 2)]
    part_settings = dict(size_limit=1900, compression=None, hashes=None)
    for k, part in enumerate(parts):
        write(OUT / "merged" / str(k), MERGED_COLUMNS, part, **part_settings)
    assert shard_count(OUT / "merged" / "0") == 2
    merge_index([str(OUT / "merged" / str(k) / "index.json") for k in range(len(parts))],
                str(OUT / "merged"), keep_local=True)

    def described(columns, rows):
        return [{name: describe(columns[name], row[name]) for name in columns} for row in rows]

    expected = {
        "plain": {"columns": PLAIN_COLUMNS, **plain, "samples": described(PLAIN_COLUMNS, samples)},
        "zstd": {"columns": PLAIN_COLUMNS, **zstd, "samples_from": "plain"},
        "merged": {"columns": MERGED_COLUMNS, **part_settings, "hashes": [],
                   "subdirs": [str(k) for k in range(len(parts))],
                   "part_sizes": [len(p) for p in parts],
                   "samples": described(MERGED_COLUMNS, [s for p in parts for s in p])},
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total} bytes)")


def hash_hex(algo, data):
    if algo in xxhash.algorithms_available:
        return getattr(xxhash, algo)(data).hexdigest()
    return hashlib.new(algo, data).hexdigest()


def check_hashes(directory):
    import zstd
    index = json.loads((directory / "index.json").read_text())
    checked = 0
    for shard in index["shards"]:
        raw, zipped = shard["raw_data"], shard["zip_data"]
        if zipped:
            stored = (directory / zipped["basename"]).read_bytes()
            assert len(stored) == zipped["bytes"], zipped["basename"]
            for algo, digest in zipped["hashes"].items():
                assert hash_hex(algo, stored) == digest, (zipped["basename"], algo)
                checked += 1
            data = zstd.decompress(stored)
        else:
            data = (directory / raw["basename"]).read_bytes()
        assert len(data) == raw["bytes"], raw["basename"]
        for algo, digest in raw["hashes"].items():
            assert hash_hex(algo, data) == digest, (raw["basename"], algo)
            checked += 1
    return len(index["shards"]), checked


def check(directory, like):
    """Reads `directory` with the reference StreamingDataset; compares with fixture `like`."""
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory
    fixtures = json.loads((OUT / "expected.json").read_text())
    expected = fixtures[like]
    expected["samples"] = fixtures[expected.get("samples_from", like)]["samples"]
    shards, hashes = check_hashes(directory)
    clean_stale_shared_memory()
    with tempfile.TemporaryDirectory() as scratch:
        # A copy: the reference reader decompresses zstd shards next to the originals.
        local = pathlib.Path(scratch) / "data"
        shutil.copytree(directory, local)
        dataset = StreamingDataset(local=str(local), remote=None, shuffle=False, batch_size=1)
        assert len(dataset) == len(expected["samples"]), (len(dataset), len(expected["samples"]))
        for i, want in enumerate(expected["samples"]):
            got = dataset[i]
            assert set(got) == set(want), (i, sorted(got), sorted(want))
            for name, encoding in expected["columns"].items():
                value = got[name]
                if encoding == "json":
                    ok = json.dumps(value) == want[name]["text"]
                elif encoding == "str_float":
                    ok = struct.pack("<d", value).hex() == want[name]["float_hex"]
                else:
                    ok = describe(encoding, value) == want[name]
                assert ok, (i, name, value, want[name])
    print(f"OK: {directory}: {len(expected['samples'])} samples in {shards} shards match fixture "
          f"'{like}' when read by streaming's StreamingDataset; {hashes} file hashes verified")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", type=pathlib.Path, help="directory written by our MDSWriter")
    parser.add_argument("--like", choices=["plain", "zstd", "merged"], default="plain")
    args = parser.parse_args()
    if args.check:
        check(args.check, args.like)
    else:
        generate()


if __name__ == "__main__":
    sys.exit(main())
