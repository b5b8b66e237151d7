#!/usr/bin/env bash
# kill_during_save.sh TRAIN: SIGKILLs microdit-train while it writes a checkpoint, then checks
# what --resume promises: no .tmp file remains, metrics.jsonl has exactly one record per logged
# step, and a checkpoint with one flipped data byte is refused by its checksum (one line on
# the log) while the one before it is used.
set -uo pipefail
train=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run=$work/run
fail() { echo "FAIL: $*"; exit 1; }
# A model of ~6M parameters: its checkpoint (weights, EMA, AdamW moments) takes long enough to
# write that the loop below sees the temporary file.
args=(--config configs/debug_tiny.yaml --set run.dir="$run" --set run.checkpoint_every=1
      --set run.keep_checkpoints=10 --set run.log_every=1 --set model.dit.dim=256
      --set model.dit.patch_mixer_dim=256 --set model.dit.head_dim=64)

killed=0
for attempt in 1 2 3; do
  rm -rf "$run"
  "$train" "${args[@]}" --set optim.steps=6 >"$work/first.log" 2>&1 &
  pid=$!
  seen=0
  while kill -0 "$pid" 2>/dev/null; do
    if compgen -G "$run/checkpoints/*.tmp.*" >/dev/null; then
      # The second checkpoint's write: an intact one (step 1) is on disk before it.
      seen=$((seen + 1))
      if [ "$(compgen -G "$run/checkpoints/step-*.safetensors" | wc -l)" -ge 1 ]; then
        kill -9 "$pid"
        killed=1
        break
      fi
    fi
    sleep 0.002
  done
  wait "$pid" 2>/dev/null
  if [ "$killed" = 1 ] && compgen -G "$run/checkpoints/*.tmp.*" >/dev/null; then break; fi
  killed=0
  echo "attempt $attempt: the write finished before the kill; again"
done
[ "$killed" = 1 ] || fail "never caught a checkpoint mid-write"
echo "killed mid-write: $(cd "$run/checkpoints" && ls)"

# Resume: the temporary goes, the log continues as if never interrupted.
"$train" "${args[@]}" --set optim.steps=6 --resume >"$work/resume.log" 2>&1 \
  || { cat "$work/resume.log"; fail "--resume exited non-zero"; }
compgen -G "$run/checkpoints/*.tmp.*" >/dev/null && fail "a .tmp file remains: $(ls "$run/checkpoints")"
steps=$(python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1]) if "\"loss\"" in l))' "$run/metrics.jsonl")
[ "$steps" = "1 2 3 4 5 6" ] || fail "metrics.jsonl steps: $steps"

# One flipped byte in the newest checkpoint's data: refused by its checksum, the previous used.
newest=$(ls "$run"/checkpoints/step-*.safetensors | sort | tail -1)
python3 - "$newest" <<'PY'
import sys
path = sys.argv[1]
with open(path, "r+b") as f:
    f.seek(-4096, 2)
    byte = f.read(1)
    f.seek(-4096, 2)
    f.write(bytes([byte[0] ^ 0x10]))
PY
log=$work/fallback.log
"$train" "${args[@]}" --set optim.steps=7 --resume >"$log" 2>&1 \
  || { cat "$log"; fail "--resume after the flip exited non-zero"; }
[ "$(grep -c "$(basename "$newest").*checksum" "$log")" = 1 ] \
  || { cat "$log"; fail "no one-line warning naming the refused checkpoint and its checksum"; }
steps=$(python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1]) if "\"loss\"" in l))' "$run/metrics.jsonl")
[ "$steps" = "1 2 3 4 5 6 7" ] || fail "metrics.jsonl steps after the fallback: $steps"
echo "ok: killed mid-write, resumed clean, the flipped checkpoint refused and the one before used"
