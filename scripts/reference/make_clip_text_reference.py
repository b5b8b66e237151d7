#!/usr/bin/env python3
"""Writes tests/data/clip_text/: small random-weight CLIP text towers and their outputs.

Run with the reference environment (torch, open_clip_torch, transformers, safetensors):
    /opt/refenv/bin/python scripts/reference/make_clip_text_reference.py

Two layouts of the same architecture, built with the original libraries (no downloads):
  open_clip  a full open_clip CLIP (text tower + tiny image tower), QuickGELU, saved as an
             open_clip training checkpoint (.pt: {"epoch", "name", "state_dict": {"module.<key>"}})
             and as safetensors. Expected output: the token states after ln_final, computed as the
             official MicroDiT encoder does (micro_diffusion/models/utils.py, openclip_text_encoder:
             token_embedding + positional_embedding -> transformer(attn_mask) -> ln_final).
  hf         a CLIPTextModel with quick_gelu (model.safetensors) and a full CLIPModel with gelu
             (pytorch_model.bin, config.json holding a text_config). Expected outputs:
             last_hidden_state and pooler_output.
Every parameter (LayerNorm scales and biases included) is drawn at random, so a swapped or
skipped tensor changes the output. The vocabulary is cut to 256 ids to keep the files small; the
two largest ids, 254 and 255, play <start_of_text> and <end_of_text> (49406 and 49407).
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import open_clip
import torch
import transformers
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "clip_text"
VOCAB = 256
SOT, EOT = VOCAB - 2, VOCAB - 1
CONTEXT = 77
WIDTH, HEADS, LAYERS = 32, 4, 2


def randomize_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter random: scales near 1, biases and weights of moderate size."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            leaf = name.rsplit(".", 1)[-1]
            if p.dim() == 1 and ("ln" in name or "norm" in name) and leaf == "weight":
                p.copy_(1.0 + 0.2 * noise)
            elif p.dim() <= 1:
                p.copy_(0.2 * noise)
            elif "embedding" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)


def token_ids(generator: torch.Generator) -> torch.Tensor:
    """(4, 77) rows as tokenizers emit them: SOT, tokens, EOT, then padding."""
    rows = []
    for length, pad in ((5, 0), (23, 0), (CONTEXT - 2, 0), (9, EOT)):
        body = torch.randint(0, SOT, (length,), generator=generator).tolist()
        row = [SOT] + body + [EOT]
        rows.append(row + [pad] * (CONTEXT - len(row)))  # open_clip pads 0, HF pads EOT
    return torch.tensor(rows, dtype=torch.int64)


def open_clip_token_states(model: open_clip.model.CLIP, ids: torch.Tensor) -> torch.Tensor:
    """The official openclip_text_encoder.forward_fxn (without its extra unsqueeze(1))."""
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(ids).to(cast_dtype)
    x = x + model.positional_embedding.to(cast_dtype)
    batch_first = getattr(model.transformer, "batch_first", False)
    if not batch_first:  # open_clip <= 2.2x ran its transformer sequence-first
        x = x.permute(1, 0, 2)
    x = model.transformer(x, attn_mask=model.attn_mask)
    if not batch_first:
        x = x.permute(1, 0, 2)
    return model.ln_final(x)


def make_open_clip(ids, generator, tensors):
    text_cfg = dict(context_length=CONTEXT, vocab_size=VOCAB, width=WIDTH, heads=HEADS, layers=LAYERS)
    vision_cfg = dict(image_size=8, patch_size=4, width=16, head_width=8, layers=1)
    cfg = dict(embed_dim=16, quick_gelu=True, vision_cfg=vision_cfg, text_cfg=text_cfg)
    model = open_clip.model.CLIP(**cfg).eval()
    randomize_(model, generator)
    with torch.no_grad():
        tokens = open_clip_token_states(model, ids)
        eot = ids.argmax(dim=-1)
        pooled = tokens[torch.arange(ids.shape[0]), eot]
        # The pooled state, projected, is open_clip's own encode_text.
        torch.testing.assert_close(pooled @ model.text_projection, model.encode_text(ids))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.startswith("visual.") for k in state) and "attn_mask" not in state
    checkpoint = {"epoch": 3, "name": "clip-text-reference",
                  "state_dict": {"module." + k: v for k, v in state.items()}}
    torch.save(checkpoint, OUT / "open_clip.pt")
    save_file(state, OUT / "open_clip.safetensors")
    (OUT / "open_clip_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tensors["open_clip.tokens"] = tokens
    tensors["open_clip.pooled"] = pooled
    return model


def hf_text_config(hidden_act: str) -> transformers.CLIPTextConfig:
    return transformers.CLIPTextConfig(
        vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=4 * WIDTH,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, max_position_embeddings=CONTEXT,
        hidden_act=hidden_act, layer_norm_eps=1e-5, projection_dim=16,
        bos_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT)


def record_hf(name, text_model, ids, tensors):
    with torch.no_grad():
        out = text_model(input_ids=ids)
        eager = text_model.float()
        eager.config._attn_implementation = "eager"
        torch.testing.assert_close(eager(input_ids=ids).last_hidden_state, out.last_hidden_state)
        eager.config._attn_implementation = "sdpa"
    tensors[f"{name}.last_hidden_state"] = out.last_hidden_state
    tensors[f"{name}.pooler_output"] = out.pooler_output


def make_hf(ids, generator, tensors):
    # quick_gelu: a bare CLIPTextModel, saved as model.safetensors.
    model = transformers.CLIPTextModel(hf_text_config("quick_gelu")).eval()
    randomize_(model, generator)
    record_hf("hf_quick_gelu", model, ids, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "model.safetensors", OUT / "hf_quick_gelu.safetensors")
        shutil.copy(Path(tmp) / "config.json", OUT / "hf_quick_gelu_config.json")

    # gelu: a full CLIPModel (vision tower, projections, logit_scale), saved as pytorch_model.bin.
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=8, patch_size=4)
    config = transformers.CLIPConfig(text_config=hf_text_config("gelu").to_dict(),
                                     vision_config=vision, projection_dim=16)
    full = transformers.CLIPModel(config).eval()
    randomize_(full, generator)
    record_hf("hf_gelu", full.text_model, ids, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        full.save_pretrained(tmp, safe_serialization=False)
        shutil.copy(Path(tmp) / "pytorch_model.bin", OUT / "hf_gelu_clip.bin")
        shutil.copy(Path(tmp) / "config.json", OUT / "hf_gelu_clip_config.json")
    keys = torch.load(OUT / "hf_gelu_clip.bin", weights_only=True).keys()
    assert any(k.startswith("vision_model.") for k in keys) and "text_projection.weight" in keys


def check_layouts_agree(oc_model, ids, tensors):
    """open_clip weights renamed to HF keys give the same states: the layouts are one function."""
    sd = oc_model.state_dict()
    hf = transformers.CLIPTextModel(hf_text_config("quick_gelu")).eval()
    mapped = {"embeddings.token_embedding.weight": sd["token_embedding.weight"],
              "embeddings.position_embedding.weight": sd["positional_embedding"],
              "final_layer_norm.weight": sd["ln_final.weight"],
              "final_layer_norm.bias": sd["ln_final.bias"]}
    for i in range(LAYERS):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                     ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            for leaf in ("weight", "bias"):
                mapped[f"{dst}{b}.{leaf}"] = sd[f"{src}{a}.{leaf}"]
        for leaf in ("weight", "bias"):
            q, k, v = sd[f"{src}attn.in_proj_{leaf}"].chunk(3)
            for name, t in (("q", q), ("k", k), ("v", v)):
                mapped[f"{dst}self_attn.{name}_proj.{leaf}"] = t
    hf.text_model.load_state_dict(mapped)
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).last_hidden_state, tensors["open_clip.tokens"])


def main():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1234)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    ids = token_ids(generator)
    tensors = {"ids": ids}
    oc_model = make_open_clip(ids, generator, tensors)
    make_hf(ids, generator, tensors)
    check_layouts_agree(oc_model, ids, tensors)
    metadata = {"torch": torch.__version__, "open_clip": open_clip.__version__,
                "transformers": transformers.__version__}
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "expected.safetensors",
              metadata=metadata)
    # The released model's text tower, from open_clip's own config, for the C++ zoo entry.
    dfn5b = open_clip.get_model_config("ViT-H-14-378-quickgelu")
    (OUT / "dfn5b_vit_h_14_378_config.json").write_text(json.dumps(dfn5b, indent=2) + "\n")
    total = sum(f.stat().st_size for f in OUT.iterdir())
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:>9}  {f.name}")
    print(f"{total:>9}  total ({metadata})")


if __name__ == "__main__":
    main()
