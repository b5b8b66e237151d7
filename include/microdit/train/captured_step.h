// The whole training step (EDM loss, forward, backward, clipping, fused AdamW) captured once as a
// CUDA graph and replayed: one launch per step instead of thousands of kernel launches, for a
// step whose shapes and inputs stay the same (expert choice and a fixed mask ratio give static
// shapes). The noise and mask draws advance at each replay through the CUDA generator's
// graph-safe offsets, and the fused AdamW's step counts on the device; the learning rate and
// the host-side step counters are those of the capture, so this serves microdit-bench
// (`--cuda-graph`). The trainer's captured step (optim.cuda_graph) is its own: host draws copied
// into static inputs, the learning rate read from the device.
#pragma once
#include <memory>

#include "microdit/train/step_graph.h"
#include "microdit/train/train_step.h"

namespace microdit::train {

class CapturedStep {
 public:
  // Runs `warmup` eager steps on a side stream (libraries pick their kernels and workspaces
  // there), then captures one step of train_step(dit, optimizer, x0, y, options). x0 and y stay
  // the step's inputs: write new values into them in place to train on other data. Needs CUDA
  // tensors, a fused AdamW and warmup >= 1. A data-parallel gradient sync (options.gradient_sync,
  // NCCL) is captured with the step: its all-reduces replay in the same order on every rank.
  CapturedStep(model::DiT& dit, torch::optim::Optimizer& optimizer, const at::Tensor& x0,
               const at::Tensor& y, const TrainStepOptions& options, int64_t warmup = 3);
  ~CapturedStep();
  CapturedStep(const CapturedStep&) = delete;
  CapturedStep& operator=(const CapturedStep&) = delete;

  // One training step; the returned tensors are rewritten by the next replay.
  TrainStepResult replay();

 private:
  std::unique_ptr<StepGraph> graph_;
  TrainStepResult result_;
};

}  // namespace microdit::train
