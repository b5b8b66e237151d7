// One optimisation step of MicroDiT training, as the official recipe runs it: EDM loss (masked
// when mask_ratio > 0) under bf16 autocast on CUDA, backward, global-norm gradient clipping,
// optimizer step.
#pragma once
#include <torch/optim/optimizer.h>

#include <optional>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/model/microdit.h"
#include "microdit/nn/execution.h"

namespace microdit::train {

class GradientBuckets;

struct TrainStepOptions {
  double mask_ratio = 0.75;
  double clip_norm = 0.25;         // <= 0: no clipping
  bool bf16_autocast = true;       // only on CUDA; CPU runs float32
  nn::ExecutionOptions execution;  // bf16 LayerNorms by default, as the official runs
  int64_t micro_batches = 1;       // gradient accumulation: the batch in this many equal parts
  // Data parallel: the last micro-batch's backward all-reduces the gradients before clipping.
  GradientBuckets* gradient_sync = nullptr;
  diffusion::EDMConfig edm;
};

struct TrainStepResult {
  at::Tensor loss;       // scalar, not synchronised
  at::Tensor grad_norm;  // scalar, before clipping
};

// x0: clean latents (B,C,H,W) float32, y: caption embeddings (B,1,L,Cy).
TrainStepResult train_step(model::DiT& dit, torch::optim::Optimizer& optimizer,
                           const at::Tensor& x0, const at::Tensor& y,
                           const TrainStepOptions& options,
                           std::optional<at::Generator> generator = std::nullopt);

// Global L2 norm of all gradients, scaled in place so it is at most max_norm (no host sync).
at::Tensor clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm);

}  // namespace microdit::train
