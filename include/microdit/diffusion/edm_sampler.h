// EDM stochastic sampler, 2nd-order Heun (Karras et al. 2022, Algorithm 2), as the official
// LatentDiffusion.edm_sampler_loop: x and sigma in float64, the model called in float32 with a
// one-element sigma it broadcasts over the batch.
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/model/microdit.h"

namespace microdit::diffusion {

// sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0.
at::Tensor edm_sigma_steps(int64_t num_steps, const EDMConfig& config,
                           at::Device device = at::kCPU);

struct SamplerOptions {
  int64_t num_steps = 30;
  double cfg = 5.0;                        // guidance scale; 1 = unguided
  std::optional<at::Generator> generator;  // for S_churn > 0 noise
};

// init: (B,C,H,W) standard-normal latents; y: caption embeddings. Returns float32 latents.
at::Tensor edm_sample(model::DiT& dit, const at::Tensor& init, const at::Tensor& y,
                      const SamplerOptions& options, const EDMConfig& config);

}  // namespace microdit::diffusion
