#!/usr/bin/env python3
"""Reference data for tests/test_clean_fid.cpp: clean-fid's "clean" mode (cleanfid 0.1.35)
run with its own code on a small RANDOM TorchScript network that has the calling convention of
inception-2015-12-05.pt (a scripted module whose `layers` submodule maps (B,3,299,299) to
(B,2048,1,1)); the real 95 MB network is never downloaded.

    /tmp/evalenv/bin/python scripts/reference/make_clean_fid_reference.py

(any venv with torch, clean-fid, pillow, numpy and safetensors works).

Writes tests/data/fid/:
  clean_inception_random.pt        the random TorchScript network (~140 kB, seed 0)
  clean_images/*.png               RGB test images: 256x256, 200x300 (HxW), 75x120, 299x299
  clean_fid_reference.safetensors
    resize/<name>/input   (H,W) float32, values in about [-40, 300] (not clipped: PIL's 'F'
                          resize does not clip)
    resize/<name>/output  (h,w) float32 = Image.fromarray(input, 'F').resize((w,h), BICUBIC)
    features/<image>      (1,2048) float32: InceptionV3W(resize_inside=False) of
                          make_resizer("PIL", False, "bicubic", (299,299)) of the image
    folder_features       (N,2048) float32: cleanfid.fid.get_folder_features(clean_images,
                          mode="clean"), files in sorted order
  and metadata with the library versions.
"""
import importlib.metadata
import pathlib
import shutil
import tempfile

import numpy as np
import PIL
import torch
from PIL import Image
from safetensors.torch import save_file

from cleanfid import fid
from cleanfid.inception_torchscript import InceptionV3W
from cleanfid.resize import make_resizer

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "fid"


class Layers(torch.nn.Module):
    """Tiny stand-in for the Inception trunk: (B,3,299,299) -> (B,2048,1,1)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2)
        self.conv3 = torch.nn.Conv2d(16, 2048, 1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.pool(self.conv3(x))


class RandomInception(torch.nn.Module):
    """Same interface as inception-2015-12-05.pt: forward(img, return_features) and `layers`."""

    def __init__(self):
        super().__init__()
        self.layers = Layers()

    def forward(self, img, return_features: bool = False):
        return self.layers((img - 128) / 128).view(img.shape[0], 2048)


def make_network(path: pathlib.Path):
    torch.manual_seed(0)
    scripted = torch.jit.script(RandomInception().eval())
    scripted.save(str(path))


def make_images(folder: pathlib.Path):
    """Smooth gradients with hard 0/255 edges (bicubic overshoot, then clip) and mild noise."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (h, w) in {"a_256": (256, 256), "b_200x300": (200, 300), "c_75x120": (75, 120),
                         "d_299": (299, 299)}.items():
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([x * 255.0 / w, y * 255.0 / h, (x + y) * 127.0 / (h + w)], axis=-1)
        image += rng.normal(0, 2, image.shape)
        image[h // 4:h // 2, w // 4:w // 2, :] = 255.0  # hard edges: overshoot above 255
        image[h // 2:3 * h // 4, w // 2:3 * w // 4, 1] = 0.0  # and below 0
        Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8), "RGB").save(
            folder / f"{name}.png")


def resize_cases():
    """(name, input (H,W) float32, (out_w, out_h)): up, down, mixed, odd, one axis only, and
    both orders of the two passes."""
    rng = np.random.default_rng(2)
    # 256 -> 299 along each axis is the real-image case of the COCO protocol at 256.
    cases = {"up_37x53_to_61x90": ((37, 53), (90, 61)),
             "256x40_to_299x47": ((40, 256), (299, 47)), "40x256_to_47x299": ((256, 40), (47, 299)),
             "mixed_300x60_to_299x70": ((300, 60), (70, 299)),
             "down_160x120_to_53x77": ((160, 120), (77, 53)),
             "width_only_20x30_to_20x45": ((20, 30), (45, 20)),
             "same_size_31x17": ((31, 17), (17, 31)),
             # Pillow runs the vertical pass first when its kernel is longer (here both have 7
             # taps, so horizontal first although the vertical scale is larger).
             "equal_taps_140x130_to_100x100": ((140, 130), (100, 100))}
    for name, ((h, w), size) in cases.items():
        x = (rng.random((h, w)) * 340 - 40).astype(np.float32)
        x[: h // 2, : w // 3] = 255.0
        yield name, x, size


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    images = OUT / "clean_images"
    if images.exists():
        shutil.rmtree(images)
    make_images(images)
    tensors = {}
    for name, x, size in resize_cases():
        out = np.asarray(Image.fromarray(x, mode="F").resize(size, resample=Image.BICUBIC))
        tensors[f"resize/{name}/input"] = torch.from_numpy(x.copy())
        tensors[f"resize/{name}/output"] = torch.from_numpy(out.copy())

    with tempfile.TemporaryDirectory() as tmp:
        net_file = pathlib.Path(tmp) / "inception-2015-12-05.pt"  # the name InceptionV3W opens
        make_network(net_file)
        shutil.copy(net_file, OUT / "clean_inception_random.pt")
        model = InceptionV3W(tmp, download=False, resize_inside=False).eval()
        resize = make_resizer("PIL", False, "bicubic", (299, 299))
        with torch.no_grad():
            for png in sorted(images.glob("*.png")):
                resized = resize(np.array(Image.open(png).convert("RGB")))  # (299,299,3) float32
                batch = torch.from_numpy(resized).permute(2, 0, 1)[None]
                tensors[f"features/{png.stem}"] = model(batch).contiguous()
            folder = fid.get_folder_features(str(images), model=model, num_workers=0,
                                             batch_size=3, device=torch.device("cpu"),
                                             mode="clean", verbose=False)
        tensors["folder_features"] = torch.from_numpy(folder.astype(np.float32))

    metadata = {"clean-fid": importlib.metadata.version("clean-fid"),
                "torch": torch.__version__, "pillow": PIL.__version__, "numpy": np.__version__}
    save_file(tensors, str(OUT / "clean_fid_reference.safetensors"), metadata=metadata)
    (OUT / "clean_fid_reference.safetensors").chmod(0o644)
    print("wrote", OUT, metadata)


if __name__ == "__main__":
    main()
