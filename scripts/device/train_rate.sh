#!/usr/bin/env bash
# train_rate.sh MICRODIT_TRAIN [microdit-train arguments]: runs microdit-train itself into a
# temporary run directory and prints one JSON line for gpu_checks.sh's bench.jsonl: the images/s
# of the last progress window its metrics.jsonl holds (the steady state, past the warm-up and a
# CUDA graph's capture), the window's steps, the loss there, the peak GPU memory so far (none on
# the CPU), and the command.
set -euo pipefail
train=$1; shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$train" "$@" --set run.dir="$dir" --set run.checkpoint_every=0 --set run.sample_every=0 >&2
python3 - "$dir/metrics.jsonl" "$*" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
timed = [r for r in records if 'images_per_s' in r]
last, before = timed[-1], (timed[-2]['step'] if len(timed) > 1 else 0)
print(json.dumps({'impl': 'microdit-train', 'args': sys.argv[2], 'step': last['step'],
                  'window_steps': last['step'] - before, 'images_per_s': last['images_per_s'],
                  'loss': last['loss'], 'peak_gib': last.get('peak_memory_gib')}))
PY
