#!/usr/bin/env python3
"""Writes the AutoencoderKL parity fixtures of tests/test_autoencoder_kl.cpp to tests/data/vae/,
computed by diffusers' AutoencoderKL (the reference implementation) with random weights.

    python -m venv --system-site-packages /tmp/vaevenv && /tmp/vaevenv/bin/pip install diffusers safetensors
    /tmp/vaevenv/bin/python scripts/reference/make_vae_reference.py

Folders (each written by `save_pretrained`, so config.json is the file diffusers itself writes):
  tiny/      block_out_channels [8, 12], layers_per_block 1, norm_num_groups 4, latent 4,
             sample_size 16; the logvar half of quant_conv's bias is pushed to +-50 on two channels
             so that the [-30, 20] clamp acts. Weights as .safetensors, and in float16 as
             diffusion_pytorch_model.fp16.bin (torch.save, the diffusers "fp16" variant name).
  tiny_d16/  16 latent channels over three levels [4, 4, 8], layers_per_block 2 (three decoder
             resnets per up block), norm_num_groups 2, shift_factor 0.1, scaling_factor 0.2614.
Each folder's reference.safetensors holds (float32):
  x               (B,3,H,W) input in [-1, 1]
  mean, logvar    latent_dist.mean / .logvar of encode(x) (logvar after the clamp)
  sample          latent_dist.sample(torch.Generator().manual_seed(SAMPLE_SEED))
  z               latents fed to decode;  decoded  decode(z).sample
  latents         (mode - shift) * scaling, the diffusion-space latents
  decoded_latents decode(latents / scaling + shift)
tiny/ also holds, with vae.enable_tiling() (tile_sample_min_size 16, overlap 0.25):
  tiled_x, tiled_mean, tiled_logvar   encode of a 24x24 image from 2x2 overlapping tiles
  tiled_z, tiled_decoded              decode of 12x12 latents from 2x2 overlapping tiles
keys_<name>.json lists {state-dict key: shape} of full-size models built from their configs:
  sdxl (stabilityai SDXL vae), kl_f8_d16 (ostris/vae-kl-f8-d16), and a tiny model without
  quant convs and without mid-block attention; config_<name>.json is the matching config.json.
"""
import json
import pathlib

import torch
from diffusers import AutoencoderKL

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "vae"
SAMPLE_SEED = 1234


def randomize(vae: AutoencoderKL) -> None:
    """Default init leaves GroupNorm at weight 1, bias 0: perturb every tensor so that a
    parameter loaded into the wrong place shows."""
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))


def build(config: dict) -> AutoencoderKL:
    vae = AutoencoderKL(**config)
    vae.eval()
    return vae


def save_reference(folder: pathlib.Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().float() for k, v in tensors.items()},
              str(folder / "reference.safetensors"), metadata={"generator": "make_vae_reference.py"})


def common_cases(vae: AutoencoderKL, x: torch.Tensor, z: torch.Tensor) -> dict:
    cfg = vae.config
    shift = cfg.shift_factor or 0.0
    dist = vae.encode(x).latent_dist
    sample = dist.sample(generator=torch.Generator().manual_seed(SAMPLE_SEED))
    latents = (dist.mode() - shift) * cfg.scaling_factor
    return {
        "x": x,
        "mean": dist.mean,
        "logvar": dist.logvar,
        "sample": sample,
        "z": z,
        "decoded": vae.decode(z).sample,
        "latents": latents,
        "decoded_latents": vae.decode(latents / cfg.scaling_factor + shift).sample,
    }


def make_tiny() -> None:
    torch.manual_seed(0)
    config = dict(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[8, 12], layers_per_block=1, norm_num_groups=4, sample_size=16,
        scaling_factor=0.13025, force_upcast=True)
    vae = build(config)
    randomize(vae)
    with torch.no_grad():
        # quant_conv output channels 4..7 are logvar: channel 4 -> +50 (clamped to 20), 5 -> -50.
        vae.quant_conv.bias[4] = 50.0
        vae.quant_conv.bias[5] = -50.0
    folder = OUT / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(folder, safe_serialization=True)
    torch.save({k: v.half() for k, v in vae.state_dict().items()},
               folder / "diffusion_pytorch_model.fp16.bin")
    with torch.no_grad():
        x = torch.rand(2, 3, 16, 16) * 2 - 1
        z = torch.randn(2, 4, 8, 8)
        cases = common_cases(vae, x, z)
        vae.enable_tiling()
        tiled_x = torch.rand(1, 3, 24, 24) * 2 - 1
        tiled_dist = vae.encode(tiled_x).latent_dist
        tiled_z = torch.randn(1, 4, 12, 12)
        cases.update(tiled_x=tiled_x, tiled_mean=tiled_dist.mean, tiled_logvar=tiled_dist.logvar,
                     tiled_z=tiled_z, tiled_decoded=vae.decode(tiled_z).sample)
    save_reference(folder, cases)


def make_tiny_d16() -> None:
    torch.manual_seed(1)
    config = dict(
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[4, 4, 8], layers_per_block=2, norm_num_groups=2, sample_size=16,
        scaling_factor=0.2614, shift_factor=0.1, force_upcast=True)
    vae = build(config)
    randomize(vae)
    folder = OUT / "tiny_d16"
    folder.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(folder, safe_serialization=True)
    with torch.no_grad():
        x = torch.rand(1, 3, 16, 16) * 2 - 1
        z = torch.randn(1, 16, 4, 4)
        save_reference(folder, common_cases(vae, x, z))


def write_keys(name: str, config: dict) -> None:
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    keys = {k: list(v.shape) for k, v in vae.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in keys.items())
    (OUT / f"keys_{name}.json").write_text("{\n" + lines + "\n}\n")
    (OUT / f"config_{name}.json").write_text(vae.to_json_string())


def make_key_lists() -> None:
    four_levels = dict(down_block_types=["DownEncoderBlock2D"] * 4,
                       up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2)
    # stabilityai/stable-diffusion-xl-base-1.0 vae/config.json
    write_keys("sdxl", dict(**four_levels, block_out_channels=[128, 256, 512, 512],
                            latent_channels=4, sample_size=1024, scaling_factor=0.13025,
                            force_upcast=True))
    # ostris/vae-kl-f8-d16 config.json; 0.2614 is the main branch's scaling_factor as inferred,
    # not verified against a released config: it does not change any key or shape
    write_keys("kl_f8_d16", dict(**four_levels, block_out_channels=[128, 128, 256, 512],
                                 latent_channels=16, sample_size=512, scaling_factor=0.2614,
                                 force_upcast=True))
    write_keys("no_quant_no_attn", dict(
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4, latent_channels=4,
        use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    make_tiny()
    make_tiny_d16()
    make_key_lists()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    for f in OUT.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
