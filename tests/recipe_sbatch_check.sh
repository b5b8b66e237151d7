#!/usr/bin/env bash
# recipe_sbatch_check.sh: runs scripts/slurm/recipe.sbatch with stand-ins for srun, scontrol and
# microdit-train (each records its arguments) and checks the job's logic: stages in order, a
# finished stage skipped, a stage with checkpoints resumed with --resume, and a stage stopped
# early (SIGTERM: exit 0 without its final checkpoint) requeueing the job.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cat >"$work/bin/srun" <<'SH'
#!/usr/bin/env bash
while [[ $1 == --* ]]; do shift; done
exec "$@"
SH
cat >"$work/bin/scontrol" <<'SH'
#!/usr/bin/env bash
echo "scontrol $*" >>"$CALLS"
SH
# The trainer stand-in: records its arguments; writes the stage's final checkpoint unless told
# to stop early at that config.
cat >"$work/bin/train" <<'SH'
#!/usr/bin/env bash
echo "train $*" >>"$CALLS"
config=$2
stage=$(basename "$config" .yaml)
final=$(grep -o "$stage/checkpoints/step-[0-9]*.safetensors" "$RECIPE" | head -1)
mkdir -p "$RUNS/$(dirname "$final")"
if [ "${STOP_AT:-}" = "$stage" ]; then touch "$RUNS/$stage/checkpoints/step-00001000.safetensors"; exit 0; fi
touch "$RUNS/$final"
SH
chmod +x "$work/bin"/*
export PATH=$work/bin:$PATH CALLS=$work/calls RECIPE=$root/scripts/slurm/recipe.sbatch
export RUNS=$work/runs TRAIN=$work/bin/train SLURM_JOB_ID=42
cd "$root"
fail() { echo "FAIL: $*"; cat "$CALLS"; exit 1; }

# A first job stopped during stage 3: stages 1-2 run, stage 3 stops early, the job requeues.
STOP_AT=stage3_512_masked bash "$RECIPE" >/dev/null
expected="train --config configs/stage1_256_masked.yaml
train --config configs/stage2_256_finetune.yaml
train --config configs/stage3_512_masked.yaml
scontrol requeue 42"
[ "$(cat "$CALLS")" = "$expected" ] || fail "first job"
# The requeued job: stages 1-2 skipped, stage 3 resumed, stage 4 from its start.
: >"$CALLS"
bash "$RECIPE" >/dev/null
expected="train --config configs/stage3_512_masked.yaml --resume
train --config configs/stage4_512_finetune.yaml"
[ "$(cat "$CALLS")" = "$expected" ] || fail "requeued job"
echo "ok: stages in order, finished ones skipped, a stopped stage resumed after a requeue"
