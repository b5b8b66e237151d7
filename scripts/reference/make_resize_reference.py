#!/usr/bin/env python3
"""Reference data for image preprocessing (tests/test_resize.cpp): Pillow's bicubic resize and
torchvision's Resize(s, BICUBIC) + CenterCrop(s) on PIL images, as the official data preparation
applies them. Needs Pillow and torchvision (the project's reference venv):

    /opt/refenv/bin/python scripts/reference/make_resize_reference.py

Writes tests/data/resize/cases.safetensors: for each case i, `input.i` (H,W,3) uint8,
`pil.i` the Pillow resize to the size in `pil_size.i` (w, h), and `tv.i` the torchvision
resize + center crop to `tv_size.i`.
"""
import pathlib

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "resize"


def image(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1),
                       (xx + yy) * 127 / max(h + w - 2, 1)], -1)
    noise = rng.integers(0, 256, (h, w, 3))
    mix = np.where(rng.random((h, w, 1)) < 0.3, noise, smooth)
    return mix.astype(np.uint8)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tensors = {}
    cases = [  # (h, w, pil target (w, h), torchvision size)
        (48, 80, (32, 20), 24),      # downscale, landscape
        (75, 50, (50, 75), 32),      # portrait, identity-size pil case
        (21, 30, (64, 45), 40),      # upscale
        (101, 67, (33, 99), 64),     # odd sizes, mixed up/down
        (64, 64, (17, 17), 17),      # square, strong downscale
    ]
    for i, (h, w, pil_size, tv_size) in enumerate(cases):
        arr = image(h, w, seed=i)
        pil = Image.fromarray(arr)
        resized = np.asarray(pil.resize(pil_size, Image.BICUBIC))
        tv = transforms.Compose([transforms.Resize(tv_size, interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(tv_size)])(pil)
        tensors[f"input.{i}"] = torch.from_numpy(arr.copy())
        tensors[f"pil.{i}"] = torch.from_numpy(resized.copy())
        tensors[f"pil_size.{i}"] = torch.tensor(pil_size, dtype=torch.int64)
        tensors[f"tv.{i}"] = torch.from_numpy(np.asarray(tv).copy())
        tensors[f"tv_size.{i}"] = torch.tensor([tv_size], dtype=torch.int64)
    save_file(tensors, OUT / "cases.safetensors")
    print(f"wrote {len(cases)} cases to {OUT / 'cases.safetensors'}")


if __name__ == "__main__":
    main()
