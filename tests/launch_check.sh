#!/usr/bin/env bash
# launch_check.sh MODE TRAIN_BIN: the launch commands of docs/distributed.md, run on this machine
# with 2 CPU processes on the loopback; passes when both ranks finish and rank 0 wrote the final
# checkpoint. MODE: torchrun (one node, 2 processes), torchrun-2nodes (two torchrun agents as
# two nodes of one process each), slurm (what srun sets, for 2 tasks).
set -uo pipefail
mode=$1 train=$2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
port=$(( 20000 + RANDOM % 20000 ))
args=(--config "$(dirname "$0")/../configs/demo.yaml" --set run.dir="$dir/run" --set optim.steps=4
      --set optim.warmup_steps=1 --set optim.batch_size=8 --set run.log_every=2 --set sample.steps=1)
export OMP_NUM_THREADS=1
torchrun=(python3 -m torch.distributed.run)
case $mode in
  torchrun)
    "${torchrun[@]}" --nproc-per-node 2 --master-port "$port" --no-python "$train" "${args[@]}" \
      > "$dir/log" 2>&1 ;;
  torchrun-2nodes)
    for node in 0 1; do
      "${torchrun[@]}" --nnodes 2 --node-rank "$node" --nproc-per-node 1 --master-addr 127.0.0.1 \
        --master-port "$port" --no-python "$train" "${args[@]}" > "$dir/log$node" 2>&1 &
    done
    wait; cat "$dir/log0" "$dir/log1" > "$dir/log" ;;
  slurm)
    for task in 0 1; do
      SLURM_PROCID=$task SLURM_NTASKS=2 SLURM_LOCALID=$task SLURM_JOB_NODELIST="localhost" \
        MASTER_PORT=$port "$train" "${args[@]}" > "$dir/log$task" 2>&1 &
    done
    wait; cat "$dir/log0" "$dir/log1" > "$dir/log" ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
finished=$(grep -c "finished at step 4" "$dir/log")
if [ "$finished" -ne 2 ] || [ ! -f "$dir/run/checkpoints/step-00000004.safetensors" ] ||
   ! grep -q "rank 0 of 2" "$dir/log"; then
  echo "$mode: expected 2 ranks to finish step 4 and a checkpoint; log:"; cat "$dir/log"; exit 1
fi
echo "ok: $mode, 2 ranks finished, checkpoint written"
