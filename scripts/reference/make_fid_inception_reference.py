#!/usr/bin/env python3
"""Reference data for tests/test_fid_inception.cpp: pytorch-fid's InceptionV3([3]) with
use_fid_inception=True (the FID network), run with deterministic synthetic weights.

pytorch-fid needs torchvision; the project's reference venv has a working one:

    /opt/refenv/bin/pip download --no-deps pytorch-fid -d /tmp/fidwheel
    PYTHONPATH=/tmp/fidwheel/pytorch_fid-0.3.0-py3-none-any.whl \
        /opt/refenv/bin/python scripts/reference/make_fid_inception_reference.py

The real weights (pt_inception-2015-12-05-6726825d.pth) are never downloaded: pytorch-fid's
download function is replaced by one returning synthetic weights under the same keys. The
~24M weights (95 MB) are too large to commit, so they follow a formula that the C++ test
recomputes bit for bit (`synthetic_tensor`, mirrored in the test): for a tensor named `key`,
element i (row-major) is

    z = splitmix64(fnv1a32(key) * 2^32 + i)       (uint64 arithmetic, wrapping)
    u = (z >> 11) * 2^-53                          (float64, exact, in [0, 1))
    c = u * 2 - 1
    conv.weight   c * sqrt(6 / fan_in)     (He-uniform: activations keep their scale)
    bn.weight     c * 0.2 + 1
    bn.bias       c * 0.1
    running_mean  c * 0.1
    running_var   c * 0.5 + 1              (positive, far from 1, so the stats matter)
    fc.*          c * 0.01
rounded to float32 at the end.

Writes tests/data/fid_inception/:
  reference.safetensors
    images_64       (2,3,64,64) uint8; the network input is images_64.float() / 255
    images_300x200  (1,3,300,200) uint8, likewise
    features_64, features_300x200   (B,2048) float32 pool features of pytorch-fid's forward
    resized_64, resized_300x200     (B,1,299,299) float32: channel 0 of F.interpolate(x,
                                    (299, 299), bilinear, align_corners=False)
  keys.json         {key: shape} of the weights file, which pytorch-fid's fid_inception_v3
                    loads strictly (no num_batches_tracked entries, as in the real file)
  missing_keys.pth  a torch.save state dict holding only Conv2d_1a_3x3.bn.* and fc.bias, for
                    the missing-key error of the .pth loader
"""
import json
import math
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

import pytorch_fid.inception as fid

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "fid_inception"


def fnv1a32(text: str) -> int:
    h = 2166136261
    for byte in text.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Vigna's SplitMix64 output function on uint64 arrays (arithmetic wraps mod 2^64)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def synthetic_tensor(key: str, shape) -> torch.Tensor:
    n = math.prod(shape)
    counter = (np.uint64(fnv1a32(key)) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    u = (splitmix64(counter) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    c = u * 2.0 - 1.0
    if key.endswith("conv.weight"):
        value = c * math.sqrt(6.0 / (n // shape[0]))
    elif key.endswith("bn.weight"):
        value = c * 0.2 + 1.0
    elif key.endswith("bn.bias") or key.endswith("running_mean"):
        value = c * 0.1
    elif key.endswith("running_var"):
        value = c * 0.5 + 1.0
    elif key.startswith("fc."):
        value = c * 0.01
    else:
        raise KeyError(key)
    return torch.from_numpy(value.astype(np.float32).reshape(shape))


def synthetic_state_dict() -> dict:
    """Every key of the FID weights file (torchvision Inception3, 1008 classes, no aux head)."""
    template = torchvision.models.inception_v3(num_classes=1008, aux_logits=False,
                                               init_weights=False)
    return {key: synthetic_tensor(key, tuple(t.shape))
            for key, t in template.state_dict().items() if not key.endswith("num_batches_tracked")}


def build_model():
    weights = synthetic_state_dict()
    fid.load_state_dict_from_url = lambda *args, **kwargs: dict(weights)
    model = fid.InceptionV3([fid.InceptionV3.DEFAULT_BLOCK_INDEX], use_fid_inception=True)
    return model.eval(), weights


def test_images(b, h, w, seed) -> torch.Tensor:
    """Smooth colour waves of random frequency and phase plus noise, so that images differ in
    content a network with random weights still sees (pure noise images all look alike)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    freq = torch.rand(b, 3, 2, generator=g) * 6 * math.pi
    phase = torch.rand(b, 3, 2, generator=g) * 2 * math.pi
    waves = (torch.sin(freq[..., 0, None, None] * xx + phase[..., 0, None, None])
             * torch.cos(freq[..., 1, None, None] * yy + phase[..., 1, None, None]))
    noise = torch.rand(b, 3, h, w, generator=g) - 0.5
    return ((0.5 + 0.4 * waves + 0.2 * noise).clamp(0, 1) * 255).round().to(torch.uint8)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model, weights = build_model()
    tensors = {}
    with torch.no_grad():
        for name, images in {"64": test_images(2, 64, 64, 1),
                             "300x200": test_images(1, 300, 200, 2)}.items():
            x = images.float() / 255
            features = model(x)[0].flatten(1)
            resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            tensors["images_" + name] = images
            tensors["features_" + name] = features.contiguous()
            tensors["resized_" + name] = resized[:, :1].contiguous()
            print(name, "feature mean", features.mean().item(), "std", features.std().item())
    save_file(tensors, str(OUT / "reference.safetensors"),
              metadata={"generator": "make_fid_inception_reference.py"})
    lines = [f"{json.dumps(key)}: {list(t.shape)}" for key, t in weights.items()]
    (OUT / "keys.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    partial = {k: v for k, v in weights.items() if k.startswith("Conv2d_1a_3x3.bn.")}
    partial["fc.bias"] = weights["fc.bias"]
    torch.save(partial, OUT / "missing_keys.pth")


if __name__ == "__main__":
    main()
