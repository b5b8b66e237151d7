#!/usr/bin/env bash
# train_with_samples_check.sh MICRODIT_TRAIN: the device script's sampling row
# (scripts/device/train_with_samples.sh) on the CPU, from encoders that
# scripts/device/random_encoders.py writes at a small size (a 1-layer text tower 32 wide with the
# real vocabulary, the 2-level VAE of tests/data/vae/config_no_quant_no_attn.json), with the stage
# 4 config shrunk to a 2-block model on 8x8 latents: the tools load what the script writes, and the row
# names two grids, each timed, of the 16 prompts at 16 px enlarged 4 times, and no GPU memory.
set -euo pipefail
train=$1
cd "$(dirname "$0")/.."
encoders=$(mktemp -d)
trap 'rm -rf "$encoders"' EXIT
cat > "$encoders/small_text.json" <<'JSON'
{"embed_dim": 32, "quick_gelu": true,
 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
JSON
python3 scripts/device/random_encoders.py "$encoders" --text-config "$encoders/small_text.json" \
  --vae-config tests/data/vae/config_no_quant_no_attn.json \
  --vae-keys tests/data/vae/keys_no_quant_no_attn.json
line=$(scripts/device/train_with_samples.sh "$train" "$encoders" \
  --config configs/stage4_512_finetune.yaml --set data.kind=synthetic --set data.synthetic_samples=4 \
  --set model.arch=custom --set 'model.dit={input_size: 8, in_channels: 4, caption_channels: 32,
    dim: 32, depth: 2, head_dim: 16, multiple_of: 16, qkv_multipliers: [1.0], ffn_multipliers: [2.0],
    patch_mixer_depth: 1, patch_mixer_dim: 32, num_experts: 2, experts_every_n: 2}' \
  --set optim.batch_size=2 --set optim.micro_batch_size=2 --set optim.precision=auto \
  --set optim.continue_from= --set optim.ema.start_step=0 --set sample.steps=2 --set run.device=cpu)
echo "$line"
python3 - "$line" <<'PY'
import json, sys
row = json.loads(sys.argv[1])
assert row['sampling'] and row['impl'] == 'microdit-train', row
assert len(row['sample_seconds']) == 2 and all(s > 0 for s in row['sample_seconds']), row
# 16 prompts in a 4x4 grid of 64 px images (make_grid's 2 px padding around each).
assert row['grid_px'] == [4 * 66 + 2, 4 * 66 + 2], row['grid_px']
assert row['peak_gib_training'] is None and row['peak_gib_with_samples'] is None, row
print('ok')
PY
