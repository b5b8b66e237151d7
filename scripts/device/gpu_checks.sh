#!/usr/bin/env bash
# All GPU checks in one call, in tiers so that a cut-off still returns the earlier ones:
#   1. build against the machine's python3 PyTorch (CUDA LibTorch), no OpenCV
#   2. parity on CUDA: float32 with TF32 off (bounds enforced), bf16 autocast (errors reported),
#      and the *_CUDA GoogleTest cases
#   3. timings: microdit-bench beside the official code (../shared/tools/bench_official.py) on the
#      same shapes, in the same call; out-of-memory is caught per row
# Needs .device/ from scripts/device/prepare.sh (carry it). Writes to $OUT (at most 8 files).
# Without a GPU it runs the same tiers on the CPU with tiny shapes (to test this script).
# A second call in the same session can skip what the first returned:
#   PARITY=0            no parity runs
#   CUDA_TESTS=FILTER   only these *_CUDA tests (a GoogleTest filter; default all)
#   ROWS="5 9-"         only these tier 3 rows, numbered in the order they run (others are
#                       recorded as skipped)
#   TARGETS="a b"       build only these targets (default all)
#   BUILD=0             no build: use BUILD_DIR as it is (a second call, or this script's test on
#                       a CPU machine with the checkout's own build)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/microdit-device-out}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
log() { echo "[$(date +%T)] $*" | tee -a "$SUMMARY"; }

if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then GPU=1; DEVICE=cuda; else GPU=0; DEVICE=cpu; fi
{ date -u; uname -a; nvidia-smi 2>&1 | head -15; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; nproc
  echo "nccl.h: $(find / -xdev -name nccl.h -not -path '*/proc/*' 2>/dev/null | head -5 | tr '\n' ' ')"; } > "$OUT/env.txt" 2>&1
log "device: $DEVICE"

# Tier 1: build, with the libraries prepare.sh carried in .device/deps where there are some.
if [ -d .device/deps ]; then
  export PKG_CONFIG_PATH="$PWD/.device/deps/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$PWD/.device/deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
BUILD_DIR=${BUILD_DIR:-build-device}
t0=$(date +%s)
build() {  # build [cmake -D options]
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMICRODIT_WITH_OPENCV=OFF "$@" >> "$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD_DIR" -j "$(nproc)" ${TARGETS:+--target $TARGETS} >> "$OUT/build.log" 2>&1
}
built() { log "tier 1 build: ok$1 in $(( $(date +%s) - t0 )) s ($(grep -m1 'nccl.h:' "$OUT/build.log"); $(grep -m1 'fused CUDA kernels:' "$OUT/build.log"))"; }
if [ "${BUILD:-1}" = 0 ]; then
  log "tier 1 build: skipped (BUILD=0), using $BUILD_DIR"
elif build -DMICRODIT_WITH_NCCL=ON -DMICRODIT_WITH_CUDA_KERNELS=ON; then
  built ""
elif build -DMICRODIT_WITH_NCCL=ON -DMICRODIT_WITH_CUDA_KERNELS=OFF; then
  # The fused kernels did not build here: keep everything else (see build.log).
  built " WITHOUT the fused CUDA kernels (their build failed, see build.log)"
elif build -DMICRODIT_WITH_NCCL=OFF -DMICRODIT_WITH_CUDA_KERNELS=OFF; then
  built " WITHOUT NCCL and the fused CUDA kernels (those builds failed, see build.log)"
else
  log "tier 1 build: FAILED after $(( $(date +%s) - t0 )) s (see build.log)"; tail -30 "$OUT/build.log"; exit 1
fi

# Tier 2: parity.
REF=.device/reference/microdit-official-tiny
[ "${PARITY:-1}" = 0 ] || {
  "$BUILD_DIR/microdit-check-reference" "$REF" --device "$DEVICE"; echo "exit $?"
  [ "$GPU" = 1 ] && { "$BUILD_DIR/microdit-check-reference" "$REF" --device cuda --bf16; echo "exit $?"; }
  # The fast path (CUDA kernels where built) in float32, bounds enforced, and in bf16.
  "$BUILD_DIR/microdit-check-reference" "$REF" --device "$DEVICE" --execution fast --weights safetensors; echo "exit $?"
  [ "$GPU" = 1 ] && { "$BUILD_DIR/microdit-check-reference" "$REF" --device cuda --bf16 --execution fast --weights safetensors; echo "exit $?"; }
  for other in .device/reference/*/; do
    [ "$other" = "$REF/" ] && continue
    "$BUILD_DIR/microdit-check-reference" "$other" --device "$DEVICE"; echo "exit $?"
  done
} > "$OUT/parity.txt" 2>&1
[ "${PARITY:-1}" = 0 ] || log "tier 2 parity: $(grep -E 'cases,' "$OUT/parity.txt" | tr '\n' ';')"
# The CUDA tests in one process (each process start costs a CUDA context); a test that did not
# report (a crash ends the process) runs again in a process of its own, and if it fails there it
# gets a backtrace from cuda-gdb (the machine has no gdb).
: > "$OUT/tests.txt"
TESTS="$BUILD_DIR/tests/microdit_tests"
timeout 300 "$TESTS" --gtest_filter="${CUDA_TESTS:-*_CUDA*}" >> "$OUT/tests.txt" 2>&1
for t in $("$TESTS" --gtest_list_tests --gtest_filter="${CUDA_TESTS:-*_CUDA*}" |
           awk '/^[^ ]/ {s=$1} /^  / {print s $1}'); do
  grep -qE "^\[ +(OK|FAILED|SKIPPED) +\] $t \(" "$OUT/tests.txt" && continue
  if ! timeout 120 "$TESTS" --gtest_filter="$t" >> "$OUT/tests.txt" 2>&1; then
    grep -qE "^\[  FAILED  \] $t \(" "$OUT/tests.txt" || log "CUDA test $t CRASHED (alone too)"
    command -v cuda-gdb >/dev/null && timeout 90 cuda-gdb -batch -ex run -ex bt \
      --args "$TESTS" --gtest_filter="$t" 2>&1 | tail -40 >> "$OUT/tests.txt"
  fi
done
for t in $(grep -oE '^\[  FAILED  \] [^ ]+ \(' "$OUT/tests.txt" | awk '{print $4}' | sort -u); do
  log "CUDA test $t FAILED"
done
log "tier 2 CUDA tests: $(grep -c '^\[       OK .* ms)$' "$OUT/tests.txt") passed, $(grep -c '^\[  FAILED  \] .* ms)$' "$OUT/tests.txt") failed, $(grep -c '^\[  SKIPPED \] .* ms)$' "$OUT/tests.txt") skipped"

# Tier 3: timings, ours and the official code on the same shapes, one JSON line per row.
BENCH="$OUT/bench.jsonl"
: > "$BENCH"
ROW=0
wanted() {  # is row $ROW in $ROWS ("5 9-12 20-"; empty: all)?
  [ -z "${ROWS:-}" ] && return 0
  local r lo hi
  for r in $ROWS; do
    lo=${r%-*}; hi=${r#*-}
    [ "$r" = "$lo" ] && hi=$lo
    [ "$ROW" -ge "$lo" ] && [ "$ROW" -le "${hi:-999}" ] && return 0
  done
  return 1
}
row() {  # row TIMEOUT_S COMMAND...
  local limit=$1; shift
  ROW=$((ROW + 1))
  if ! wanted; then
    echo "{\"cmd\": \"$*\", \"error\": \"skipped: row $ROW not in ROWS=$ROWS\"}" >> "$BENCH"; return 0
  fi
  if [ "$SECONDS" -gt "${DEADLINE_S:-500}" ]; then
    echo "{\"cmd\": \"$*\", \"error\": \"skipped: past the ${DEADLINE_S:-500} s deadline\"}" >> "$BENCH"; return 0
  fi
  local left=$(( ${HARD_END_S:-560} - SECONDS ))
  [ "$left" -lt "$limit" ] && limit=$left
  log "row: $*"
  timeout "$limit" "$@" 2>>"$OUT/bench_err.log" | grep '^{' >> "$BENCH" ||
    echo "{\"cmd\": \"$*\", \"error\": \"exit $? (out of memory = 3, timeout = 124)\"}" >> "$BENCH"
}
# Ours: microdit-bench runs microdit-train's Trainer on the config (per-sample draws, the prefetch
# thread, pinned copies: the rate microdit-train's metrics.jsonl reports for the same --config and
# --set), then the training step alone on device inputs; its row has both.
ours() { row 180 "$BUILD_DIR/microdit-bench" --set run.device="$DEVICE" "$@"; }
# microdit-train itself (scripts/device/train_rate.sh): one JSON line from its metrics.jsonl.
# shellcheck disable=SC2086  # callers pass $SYNTHETIC unquoted
trained() { row 300 scripts/device/train_rate.sh "$BUILD_DIR/microdit-train" --set run.device="$DEVICE" "$@"; }
# microdit-train with sample grids (scripts/device/train_with_samples.sh): peak memory and the
# grids' seconds, from the full-size random-weight encoders it writes into $ENCODERS once.
ENCODERS=${ENCODERS:-/tmp/microdit-random-encoders}
sampled() { row 300 scripts/device/train_with_samples.sh "$BUILD_DIR/microdit-train" "$ENCODERS" --set run.device="$DEVICE" "$@"; }
official() {
  [ -f .device/peer/md/dit.py ] || return 0
  row "${OFFICIAL_LIMIT:-120}" env PYTHONUNBUFFERED=1 python3 .device/peer/bench_official.py --models .device/peer "$@"
}
# Rows run in order of importance; a row that would start after DEADLINE_S seconds of this script
# is skipped (recorded as such), so the call ends inside the 10-minute limit.
DEADLINE_S=${DEADLINE_S:-500}
SYNTHETIC="--set data.kind=synthetic"
# A stage config in a world of one at micro-batch $2: stage CONFIG BATCH [bench args].
stage() {
  local config=$1 batch=$2; shift 2
  # shellcheck disable=SC2086  # SYNTHETIC is a list of arguments
  ours --config "configs/$config.yaml" $SYNTHETIC --set optim.batch_size="$batch" \
    --set optim.micro_batch_size="$batch" "$@"
}
stage1() { stage stage1_256_masked 256 "$@"; }
# Tiny_2 with stage 1's recipe (256 px, mask 0.75): tiny BATCH [bench args].
tiny() { local batch=$1; shift; stage stage1_256_masked "$batch" --set model.arch=MicroDiT_Tiny_2 "$@"; }
if [ "$GPU" = 1 ]; then
  # Stage 1 (XL_2, 256 px, batch 256, mask 0.75) as its config runs (execution fast): eager
  # with a kernel profile, then captured as a CUDA graph.
  stage1 --profile 1
  stage1 --set optim.cuda_graph=true
  # The official compiled stage 1 run on the same card (the stage 1 goal's reference).
  OFFICIAL_LIMIT=300 official --arch MicroDiT_XL_2 --batch 256 --mask 0.75 --compile
  # The same config through microdit-train itself, eager and captured: the images/s of its
  # metrics.jsonl's last window of 10 steps (40 steps: no learning-rate warm-up to fit in).
  for graph in false true; do
    trained --config configs/stage1_256_masked.yaml $SYNTHETIC --set optim.batch_size=256 \
      --set optim.micro_batch_size=256 --set optim.steps=40 --set optim.warmup_steps=0 \
      --set run.log_every=10 --set optim.cuda_graph=$graph
  done
  # Stage 4 as one GPU of the 8-GPU run holds it (micro-batch 32, the EMA copy), with its sample
  # grids (the config's 16 prompts) from the full-size text tower and VAE: peak memory, seconds.
  sampled --config configs/stage4_512_finetune.yaml $SYNTHETIC --set optim.batch_size=32 \
    --set optim.micro_batch_size=32 --set optim.continue_from= --set optim.ema.start_step=0
  # The later stages as an 8-GPU run of their configs steps them, in a world of one at the
  # configs' micro-batches: eager and captured.
  for shape in "stage2_256_finetune 128" "stage3_512_masked 64" "stage4_512_finetune 32"; do
    read -r config batch <<< "$shape"
    stage "$config" "$batch" --steps 6 --warmup 3
    stage "$config" "$batch" --steps 6 --warmup 3 --set optim.cuda_graph=true
  done
  # Beside the official code at the official micro-batches, ours captured.
  stage stage2_256_finetune 64 --steps 6 --warmup 3 --set optim.cuda_graph=true
  official --arch MicroDiT_XL_2 --batch 64 --mask 0 --res 32 --steps 6 --warmup 2
  stage stage3_512_masked 32 --steps 6 --warmup 3 --set optim.cuda_graph=true
  official --arch MicroDiT_XL_2 --batch 32 --mask 0.75 --res 64 --steps 6 --warmup 2
  stage stage4_512_finetune 16 --steps 6 --warmup 3 --set optim.cuda_graph=true
  official --arch MicroDiT_XL_2 --batch 16 --mask 0 --res 64 --steps 6 --warmup 2
  # Tiny_2 (the goal: 1.75x the official eager run): captured, with a profile.
  tiny 256 --set optim.cuda_graph=true --profile 1
  official --arch MicroDiT_Tiny_2 --batch 256 --mask 0.75
  # Same function: 200 steps of Tiny_2 from one seed at a constant learning rate, the reference
  # and the fast path, each with bf16 and with float32 LayerNorms.
  for execution in reference fast; do
    for precision in bf16 bf16-fp32norm; do
      tiny 64 --steps 200 --warmup 1 --set optim.schedule=constant --set optim.lr=1e-4 \
        --set optim.execution=$execution --set optim.precision=$precision
    done
  done
  # The reference path at stage 1, where its time goes.
  stage1 --set optim.execution=reference --profile 1
  # The host's time per step: at batch 2 the GPU has little work, so the eager step takes as long
  # as the host needs to queue it (operators, autograd, kernel launches); the captured one does not.
  stage stage1_256_masked 2
  stage stage1_256_masked 2 --set optim.cuda_graph=true
  # The attention backends ATen did not pick.
  stage1 --set optim.attention_backend=flash
  stage1 --set optim.attention_backend=efficient
  stage1 --set optim.attention_backend=math --profile 1
  stage1 --set optim.precision=bf16-fp32norm
else
  # Tiny shapes on the CPU (float32: optim.precision auto), to test this script.
  tiny 2 --steps 1 --warmup 1 --set optim.precision=auto --set data.synthetic_samples=4 \
    --set optim.execution=reference --profile 1
  tiny 2 --steps 1 --warmup 1 --set optim.precision=auto --set data.synthetic_samples=4 \
    --set optim.execution=fast
  ours --config configs/debug_tiny.yaml --steps 2
  trained --config configs/debug_tiny.yaml --set optim.steps=6 --set run.log_every=2
  official --arch MicroDiT_Tiny_2 --batch 2 --mask 0.75 --steps 1 --warmup 1
  # The full-size encoders on a Tiny_2 at 64 px, one prompt.
  sampled --config configs/stage4_512_finetune.yaml $SYNTHETIC --set model.arch=MicroDiT_Tiny_2 \
    --set model.zoo.input_size=8 --set optim.batch_size=2 --set optim.micro_batch_size=2 \
    --set optim.precision=auto --set data.synthetic_samples=4 --set optim.continue_from= \
    --set optim.ema.start_step=0 --set sample.steps=2 --set 'sample.prompts=["a"]'
fi
log "tier 3 bench: $(wc -l < "$BENCH") rows"
python3 scripts/device/bench_table.py "$BENCH" | tee "$OUT/bench_table.txt"
