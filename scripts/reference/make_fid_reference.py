#!/usr/bin/env python3
"""Reference data for the Frechet distance of FID (tests/test_frechet_distance.cpp), computed as
pytorch-fid computes it. Needs numpy, scipy and safetensors, e.g. in a venv:

    python3 -m venv /tmp/fidenv && /tmp/fidenv/bin/pip install numpy scipy safetensors
    /tmp/fidenv/bin/python scripts/reference/make_fid_reference.py

Writes tests/data/fid/frechet.safetensors: for each case C, the activations `C.act1`, `C.act2`
(N,D) float32, their statistics `C.mu1`, `C.sigma1`, `C.mu2`, `C.sigma2` (float64, from the
activations cast to float64) and `C.fid` (shape (1,), float64). The metadata holds the numpy
and scipy versions and, per case, whether the eps retry fired (`C.retried`). Also writes
tests/data/fid/stats16.npz (np.savez of mu, sigma of case rand16's act1), the layout of
pytorch-fid's precomputed statistics files, stats16_deflated.npz (the same arrays written by
np.savez_compressed) and huge_shape.npz (its mu.npy header claims 10^12 elements for 16).
`--extra-npz-only` writes only these last two, from the committed frechet.safetensors (needs
numpy and safetensors, not scipy).
"""
import io
import pathlib
import sys
import zipfile

import numpy as np
from safetensors.numpy import load_file, save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "fid"


def statistics(act):
    """pytorch-fid's calculate_activation_statistics, on float64 activations."""
    act = act.astype(np.float64)
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid 0.3.0 src/pytorch_fid/fid_score.py calculate_frechet_distance, verbatim in
    substance (clean-fid's fid.frechet_distance is the same formula). Returns (fid, retried)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    assert mu1.shape == mu2.shape and sigma1.shape == sigma2.shape
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))  # pytorch-fid passes disp=False (deprecated)
    retried = not np.isfinite(covmean).all()
    if retried:
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
    return fid, retried


def correlated(rng, n, d, scale, shift):
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ mix * scale + shift).astype(np.float32)


def cases(rng):
    rank1, rank2 = correlated(rng, 10, 32, 1.0, 0.0), correlated(rng, 10, 32, 1.3, 0.2)
    zero1, zero2 = correlated(rng, 200, 16, 1.0, 0.0), correlated(rng, 200, 16, 0.8, -0.1)
    zero1[:, 3] = 0.5   # no variance in act1 only
    zero1[:, 5] = -1.0  # no variance in both
    zero2[:, 5] = 2.0
    rand16 = correlated(rng, 200, 16, 1.0, 0.0)
    return {
        "rand16": (rand16, correlated(rng, 200, 16, 1.2, 0.3)),
        "rand64": (correlated(rng, 200, 64, 1.0, 0.0), correlated(rng, 200, 64, 0.9, -0.2)),
        "identical": (rand16, rand16),
        "rank_deficient": (rank1, rank2),  # N < D: both covariances have rank 9
        "zero_variance": (zero1, zero2),
    }


def npy_bytes(array):
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def write_extra_npz(tensors):
    mu, sigma = tensors["rand16.mu1"], tensors["rand16.sigma1"]
    np.savez_compressed(OUT / "stats16_deflated.npz", mu=mu, sigma=sigma)
    # A damaged header, to be checked against the data before anything is allocated: the
    # version 1.0 header (10 bytes, then the dict padded with spaces to its '\n') keeps its length.
    npy = npy_bytes(mu)
    start, end = 10, npy.index(b"\n") + 1
    text = npy[start:end].replace(b"(16,)", b"(1000000000000,)").rstrip()
    huge = npy[:start] + text.ljust(end - start - 1) + b"\n" + npy[end:]
    with zipfile.ZipFile(OUT / "huge_shape.npz", "w") as npz:
        npz.writestr(zipfile.ZipInfo("mu.npy", date_time=(1980, 1, 1, 0, 0, 0)), huge)
        npz.writestr(zipfile.ZipInfo("sigma.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                     npy_bytes(sigma))


def main():
    import scipy

    OUT.mkdir(parents=True, exist_ok=True)
    tensors = {}
    metadata = {"numpy": np.__version__, "scipy": scipy.__version__}
    for name, (act1, act2) in cases(np.random.default_rng(20251126)).items():
        mu1, sigma1 = statistics(act1)
        mu2, sigma2 = statistics(act2)
        fid, retried = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
        if name != "identical":  # its stats are those of rand16: stored once
            tensors.update({f"{name}.act1": act1, f"{name}.act2": act2,
                            f"{name}.mu1": mu1, f"{name}.sigma1": sigma1,
                            f"{name}.mu2": mu2, f"{name}.sigma2": sigma2})
        tensors[f"{name}.fid"] = np.array([fid], dtype=np.float64)
        metadata[f"{name}.retried"] = str(retried)
        print(f"{name}: fid {fid!r} retried {retried}")
    save_file(tensors, OUT / "frechet.safetensors", metadata=metadata)
    np.savez(OUT / "stats16.npz", mu=tensors["rand16.mu1"], sigma=tensors["rand16.sigma1"])
    write_extra_npz(tensors)


if __name__ == "__main__":
    if sys.argv[1:] == ["--extra-npz-only"]:
        write_extra_npz(load_file(OUT / "frechet.safetensors"))
    else:
        main()
