#!/usr/bin/env bash
# The main job on its built-in default: installs what is missing, builds, trains a small MicroDiT
# on the built-in dataset (coloured shapes, no downloads; about 8 minutes on 2 CPU cores), then
# shows its samples: the grid of the fixed prompts and how many match their prompt's colours, its
# shape, and both.
# Extra arguments go to microdit-train, e.g. scripts/demo.sh --set optim.steps=300
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
TARGETS=microdit-train scripts/build.sh  # only the trainer: the test suite is not needed here
RUN_DIR=${RUN_DIR:-runs/demo}
rm -rf "$RUN_DIR"
build/microdit-train --config configs/demo.yaml --set "run.dir=$RUN_DIR" "$@"
grid=$(ls "$RUN_DIR"/samples/*.png | tail -1)
echo
echo "samples: $grid"
echo "prompt match (fractions of samples whose background and object colours, shape, and all three"
echo "equal the prompt's):"
grep prompt_match "$RUN_DIR/metrics.jsonl" | tail -1
echo "TensorBoard: tensorboard --logdir $RUN_DIR"
