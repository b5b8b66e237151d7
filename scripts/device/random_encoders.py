#!/usr/bin/env python3
"""random_encoders.py OUT [--text-config F] [--vae-config F --vae-keys F]: encoders with random
weights, for timing sampling during training where the released weights cannot be downloaded
(the GPU machine reaches nothing). By default full-size ones:
  OUT/text_encoder.bin  the DFN5B-CLIP-ViT-H-14-378 text tower in the open_clip layout (the
                        released open_clip_pytorch_model.bin holds these keys beside the visual
                        tower's, which the loader ignores), float32, torch.save
  OUT/text_config.json  its open_clip model config (the loader's --text-config)
  OUT/vae/              the SDXL VAE as a diffusers folder: config.json and
                        diffusion_pytorch_model.bin, float32
Shapes come from the repository's fixtures: tests/data/clip_text/dfn5b_vit_h_14_378_config.json
(the open_clip model config) and tests/data/vae/{config,keys}_sdxl.json (written by diffusers'
AutoencoderKL, scripts/reference/make_vae_reference.py); the options name others (the CPU test
uses small ones). Only torch is needed, as on the GPU machine. Weights are scaled by
1/sqrt(fan-in) and norms start at 1, so activations stay finite and the images the sampler
decodes are real numbers, if noise."""
import argparse
import json
import pathlib
import shutil
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXT_CONFIG = ROOT / "tests/data/clip_text/dfn5b_vit_h_14_378_config.json"
VAE_CONFIG = ROOT / "tests/data/vae/config_sdxl.json"
VAE_KEYS = ROOT / "tests/data/vae/keys_sdxl.json"


def open_clip_text_shapes(config):
    """{key: shape} of open_clip's text tower (CLIP.transformer, token_embedding, ...)."""
    text = config["text_cfg"]
    width, layers, ctx = text["width"], text["layers"], text["context_length"]
    shapes = {"token_embedding.weight": [text["vocab_size"], width],
              "positional_embedding": [ctx, width],
              "ln_final.weight": [width], "ln_final.bias": [width],
              "text_projection": [width, config["embed_dim"]]}
    hidden = int(width * text.get("mlp_ratio", 4.0))
    for i in range(layers):
        block = f"transformer.resblocks.{i}."
        shapes.update({block + "ln_1.weight": [width], block + "ln_1.bias": [width],
                       block + "attn.in_proj_weight": [3 * width, width],
                       block + "attn.in_proj_bias": [3 * width],
                       block + "attn.out_proj.weight": [width, width],
                       block + "attn.out_proj.bias": [width],
                       block + "ln_2.weight": [width], block + "ln_2.bias": [width],
                       block + "mlp.c_fc.weight": [hidden, width], block + "mlp.c_fc.bias": [hidden],
                       block + "mlp.c_proj.weight": [width, hidden],
                       block + "mlp.c_proj.bias": [width]})
    return shapes


def random_weights(shapes, generator):
    tensors = {}
    for key, shape in shapes.items():
        if len(shape) == 1:
            fill = 1.0 if key.endswith("weight") else 0.0  # norms' scales at 1, biases at 0
            tensors[key] = torch.full(shape, fill)
        elif key.endswith("embedding.weight") or key == "positional_embedding":
            tensors[key] = torch.randn(shape, generator=generator) * 0.02
        else:
            fan_in = 1
            for size in (shape[:1] if key == "text_projection" else shape[1:]):
                fan_in *= size
            tensors[key] = torch.randn(shape, generator=generator) / fan_in ** 0.5
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--text-config", type=pathlib.Path, default=TEXT_CONFIG)
    parser.add_argument("--vae-config", type=pathlib.Path, default=VAE_CONFIG)
    parser.add_argument("--vae-keys", type=pathlib.Path, default=VAE_KEYS)
    args = parser.parse_args()
    (args.out / "vae").mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    text_config = json.loads(args.text_config.read_text())
    text = random_weights(open_clip_text_shapes(text_config), generator)
    torch.save(text, args.out / "text_encoder.bin")
    shutil.copyfile(args.text_config, args.out / "text_config.json")
    vae = random_weights(json.loads(args.vae_keys.read_text()), generator)
    torch.save(vae, args.out / "vae" / "diffusion_pytorch_model.bin")
    shutil.copyfile(args.vae_config, args.out / "vae" / "config.json")
    count = lambda tensors: sum(t.numel() for t in tensors.values())
    print(f"{args.out}: text tower {count(text):,} parameters, VAE {count(vae):,}", file=sys.stderr)


if __name__ == "__main__":
    main()
