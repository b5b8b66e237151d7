#!/usr/bin/env python3
"""Writes tests/data/clip_score/: tiny random CLIP models and torchmetrics' CLIPScore on them.

Run with the evaluation reference environment (torch, transformers, torchmetrics, open_clip_torch,
pillow, safetensors):
    /tmp/evalenv/bin/python scripts/reference/make_clip_score_reference.py

hf/         a random transformers CLIPModel laid out as openai/clip-vit-large-patch14 is on the
            hub: config.json, model.safetensors, preprocessor_config.json (the openai file's old
            format: integer size and crop_size). Vision: 224 px, patch 32, width 32, 2 layers;
            text: width 8, 2 layers, the real 49,408-id vocabulary, eos_token_id 2 as in the
            openai configs (pooling at argmax(ids); a caption cut by torchmetrics has no end
            token, so that is its start token 49406, which HF's other branch picks too). The weights are stored in float16 to keep
            the file small; the reference runs those same rounded values in float32.
            vocab.json and merges.txt are not committed: they are derived from
            tests/data/tokenizer/bpe_simple_vocab_16e6.txt.gz (as the test does with
            write_hf_vocabulary), so the tokenizer is the real CLIP one.
open_clip/  a random open_clip CLIP (QuickGELU, OpenAI mean/std) as model config json +
            open_clip_model.safetensors (float16 weights).
expected.safetensors
  images.{i}               (H,W,3) uint8 inputs: non-square, smaller and larger than 224
  hf.pixel_values_strided  (N,3,45,45) float32: CLIPImageProcessor's pixel_values[..., ::5, ::5]
  hf.pixel_sums            (N,3) float64: their per-channel sums over all 224x224 pixels
  hf.input_ids             (N,77) int64: CLIPProcessor(padding=True) ids after torchmetrics'
                           truncation to max_position_embeddings (caption 3 is longer than 77
                           tokens and loses its end token)
  hf.image_embeds / hf.text_embeds   get_image_features / get_text_features
  hf.scores                per-pair scores from torchmetrics' own _clip_score_update
  hf.clip_score            CLIPScore(...).compute(): max(mean, 0)
  open_clip.pixel_* / open_clip.input_ids / open_clip.image_embeds / open_clip.text_embeds
                           open_clip's preprocess transform, tokenizer, encode_image/encode_text
  open_clip.scores         100 * cosine of those embeds
  negative.*               a pair list whose mean score is negative: clip_score is 0
"""
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import open_clip
import PIL
import torch
import torchmetrics
from torchmetrics.multimodal import CLIPScore
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file
from torchmetrics.functional.multimodal.clip_score import _clip_score_update

from make_clip_text_reference import randomize_  # same folder

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "clip_score"
BPE = ROOT / "tests" / "data" / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
SIZES = [(240, 300), (152, 97), (224, 224), (97, 263), (230, 226)]  # (H, W); 3 of them
# leave crop margins of 4k+3 pixels, where floor (HF) and round-half-even (torchvision) differ
STRIDE = 5  # pixel values are kept at every 5th row and column, plus full per-channel sums
CAPTIONS = [
    "a photo of a cat",
    "Two dogs playing in the snow, next to a red barn!",
    "an astronaut",
    " ".join(["a very long caption about many colourful things"] * 12),  # > 77 tokens
    "",
]


def randomize_half_(module, generator):
    """Every parameter random, as for the text-tower fixtures, then rounded to float16."""
    randomize_(module, generator)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())


def smooth_image(h, w, generator):
    """Coarse random colours upsampled plus fine noise: photo-like, compresses in git."""
    coarse = torch.rand((1, 3, 6, 6), generator=generator) * 255
    base = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.randn((1, 3, h, w), generator=generator) * 12
    return (base + noise).clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).contiguous()


def write_hf_tokenizer(folder):
    """vocab.json + merges.txt of openai/clip-vit-*, derived from open_clip's merges file."""
    merges = gzip.open(BPE).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    tokenizer = open_clip.tokenizer.SimpleTokenizer(str(BPE))
    vocab = dict(tokenizer.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def make_hf(folder, generator):
    text = dict(vocab_size=49408, hidden_size=8, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                bos_token_id=0, eos_token_id=2, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  image_size=224, patch_size=32, hidden_act="quick_gelu")
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    model = transformers.CLIPModel(config).eval()
    randomize_half_(model, generator)
    model.half().save_pretrained(folder)  # model.safetensors in float16
    preprocessor = {"crop_size": 224, "do_center_crop": True, "do_normalize": True,
                    "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
                    "image_mean": MEAN, "image_std": STD, "resample": 3, "size": 224}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")


def load_hf(folder):
    """What torchmetrics does for an openai/* name, in float32."""
    model = transformers.CLIPModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    processor = transformers.CLIPProcessor.from_pretrained(folder)
    return model, processor


def record_hf(folder, images, tensors):
    model, processor = load_hf(folder)
    print("image processor:", type(processor.image_processor).__name__,
          "tokenizer:", type(processor.tokenizer).__name__)
    chw = [torch.from_numpy(np.ascontiguousarray(i.numpy().transpose(2, 0, 1))) for i in images]
    pixels = processor(images=chw, return_tensors="pt")["pixel_values"]
    record_pixels("hf", pixels, tensors)

    with torch.no_grad():
        scores, n = _clip_score_update(chw, CAPTIONS, model, processor)
        metric = CLIPScore(model_name_or_path=lambda: (model, processor))
        metric.update(chw, CAPTIONS)
        aggregate = metric.compute()
        torch.testing.assert_close(aggregate, scores.mean().clamp(min=0))
        image_embeds = model.get_image_features(pixels)
        text = processor(text=CAPTIONS, return_tensors="pt", padding=True)
        ids, mask = text["input_ids"][:, :77], text["attention_mask"][:, :77]
        assert text["input_ids"].shape[1] > 77 and ids[3, -1] != 49407
        text_embeds = model.get_text_features(ids, mask)
        cos = torch.nn.functional.cosine_similarity(image_embeds, text_embeds)
        torch.testing.assert_close(100 * cos, scores, atol=1e-4, rtol=0)

        # torchmetrics clamps the mean, not each pair: a negative mean gives 0.
        neg_idx = [int(i) for i in torch.argsort(scores)[:2]]
        neg_chw, neg_text = [chw[i] for i in neg_idx], [CAPTIONS[i] for i in neg_idx]
        neg_scores, _ = _clip_score_update(neg_chw, neg_text, model, processor)
        metric = CLIPScore(model_name_or_path=lambda: (model, processor))
        metric.update(neg_chw, neg_text)
        neg_aggregate = metric.compute()
    print("hf scores", scores.tolist(), "clip_score", float(aggregate))
    print("negative pairs", neg_idx, neg_scores.tolist(), float(neg_aggregate))
    tensors.update({"hf.input_ids": ids, "hf.image_embeds": image_embeds,
                    "hf.text_embeds": text_embeds, "hf.scores": scores,
                    "hf.clip_score": aggregate.reshape(()),
                    "negative.index": torch.tensor(neg_idx), "negative.scores": neg_scores,
                    "negative.clip_score": neg_aggregate.reshape(())})
    return model


def record_pixels(prefix, pixels, tensors):
    """Sampled pixel values and exact per-channel sums: small, yet any shifted crop or changed
    rounding of the resize shows."""
    tensors[f"{prefix}.pixel_values_strided"] = pixels[:, :, ::STRIDE, ::STRIDE]
    tensors[f"{prefix}.pixel_sums"] = pixels.double().sum(dim=(2, 3))


def make_open_clip(folder, images, generator, tensors):
    vision_cfg = dict(image_size=224, patch_size=32, width=16, head_width=8, layers=2)
    text_cfg = dict(context_length=77, vocab_size=49408, width=8, heads=2, layers=1)
    cfg = dict(embed_dim=8, quick_gelu=True, vision_cfg=vision_cfg, text_cfg=text_cfg)
    model = open_clip.model.CLIP(**cfg).eval()
    randomize_half_(model, generator)
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    preprocess = open_clip.transform.image_transform(224, is_train=False, mean=MEAN, std=STD)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(str(BPE))
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.fromarray(i.numpy())) for i in images])
        ids = tokenizer(CAPTIONS)
        image_embeds = model.encode_image(pixels)
        text_embeds = model.encode_text(ids)
        scores = 100 * torch.nn.functional.cosine_similarity(image_embeds, text_embeds)
    record_pixels("open_clip", pixels, tensors)
    tensors.update({"open_clip.input_ids": ids,
                    "open_clip.image_embeds": image_embeds, "open_clip.text_embeds": text_embeds,
                    "open_clip.scores": scores})
    print("open_clip scores", scores.tolist())


def main():
    torch.manual_seed(3)
    generator = torch.Generator().manual_seed(3)
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "hf").mkdir(parents=True)
    (OUT / "open_clip").mkdir()
    images = [smooth_image(h, w, generator) for h, w in SIZES]
    tensors = {f"images.{i}": image for i, image in enumerate(images)}
    make_hf(OUT / "hf", generator)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "openai-tiny-clip"
        shutil.copytree(OUT / "hf", folder)
        write_hf_tokenizer(folder)
        record_hf(folder, images, tensors)
    make_open_clip(OUT / "open_clip", images, generator, tensors)
    metadata = {"torch": torch.__version__, "transformers": transformers.__version__,
                "torchmetrics": torchmetrics.__version__, "open_clip": open_clip.__version__,
                "pillow": PIL.__version__, "captions": json.dumps(CAPTIONS)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "expected.safetensors",
              metadata=metadata)
    (OUT / "captions.json").write_text(json.dumps(CAPTIONS, indent=2) + "\n")
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            print(f"{f.stat().st_size:>9}  {f.relative_to(OUT)}")


if __name__ == "__main__":
    main()
