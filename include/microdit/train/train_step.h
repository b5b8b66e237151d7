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

// The factor min(1, max_norm / (norm + 1e-6)) of torch.nn.utils.clip_grad_norm_ as the number
// it divides by: a float32 scalar max(1, (norm + 1e-6) / max_norm), for a fused AdamW.
at::Tensor clipping_divisor(const at::Tensor& norm, double max_norm);

// Clips `grads` to max_norm given their global norm (max_norm <= 0: no clipping), then
// optimizer.step(), without a host synchronisation. A fused ScaledAdamW divides the gradients by
// clipping_divisor inside its kernel (one pass over all gradients fewer; they end clipped all
// the same); any other optimizer gets them scaled in place first.
void clip_to_norm_and_step(const std::vector<at::Tensor>& grads, const at::Tensor& norm,
                           torch::optim::Optimizer& optimizer, double max_norm);

// The global L2 norm of the parameters' gradients, then clip_to_norm_and_step; returns the norm
// before clipping.
at::Tensor clip_and_step(const std::vector<at::Tensor>& parameters,
                         torch::optim::Optimizer& optimizer, double max_norm);

}  // namespace microdit::train
