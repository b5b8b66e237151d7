#!/usr/bin/env bash
# train_with_samples.sh MICRODIT_TRAIN ENCODERS [microdit-train arguments]: runs microdit-train
# with sample grids on for 3 steps, a grid at step 2 and one at the end, and prints one JSON line
# for gpu_checks.sh's bench.jsonl: the peak GPU memory of the progress record before the first
# grid (training, and the text tower at start-up) and of the one after it (with sampling; none on
# the CPU), each grid's seconds, its size and the command.
# ENCODERS is what scripts/device/random_encoders.py writes (text_encoder.bin, text_config.json,
# vae/); where it holds no text_encoder.bin, that script writes the full-size ones first (the DFN5B
# text tower and the SDXL VAE with random weights).
set -euo pipefail
train=$1 encoders=$2; shift 2
[ -f "$encoders/text_encoder.bin" ] || python3 "$(dirname "$0")/random_encoders.py" "$encoders"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$train" "$@" --set run.dir="$dir" --set run.checkpoint_every=0 --set run.eval_every=0 \
  --set optim.steps=3 --set optim.warmup_steps=0 --set run.log_every=1 --set run.sample_every=2 \
  --set sample.vae="$encoders/vae" --set sample.text_encoder="$encoders/text_encoder.bin" \
  --set sample.text_config="$encoders/text_config.json" --set sample.tokenizer=tests/data/tokenizer/bpe_simple_vocab_16e6.txt.gz >&2
python3 - "$dir" "$*" <<'PY'
import json, pathlib, struct, sys
run = pathlib.Path(sys.argv[1])
records = [json.loads(line) for line in open(run / 'metrics.jsonl')]
peak = {r['step']: r.get('peak_memory_gib') for r in records if 'loss' in r}
grids = [(r['step'], r['sample_seconds']) for r in records if 'sample_seconds' in r]
with open(run / 'samples' / f'step-{grids[0][0]:08d}.png', 'rb') as grid:
    size = struct.unpack('>II', grid.read(24)[16:24])  # the PNG header's width and height
print(json.dumps({'impl': 'microdit-train', 'sampling': True, 'args': sys.argv[2],
                  'peak_gib_training': peak[grids[0][0]],
                  'peak_gib_with_samples': peak[max(peak)],
                  'sample_seconds': [seconds for _, seconds in grids], 'grid_px': size}))
PY
