// EDM training loss (Karras et al. 2022, Eq. 2 with the weighting of Table 1) as the official
// LatentDiffusion.edm_loss computes it, with the masked reduction of MicroDiT: loss averaged over
// the patches the backbone kept.
// Legend: B batch, C channels, H W latent size, T tokens.
#pragma once
#include <ATen/ATen.h>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/model/masking.h"
#include "microdit/model/microdit.h"
#include "microdit/model/token_route.h"

namespace microdit::diffusion {

// The random draws of one loss evaluation, made by the caller (so they can be per-sample
// streams): rnd_normal (B,1,1,1) standard normal for ln(sigma), noise (B,C,H,W) standard normal.
struct EDMLossNoise {
  at::Tensor rnd_normal;
  at::Tensor noise;
};

EDMLossNoise sample_loss_noise(const at::Tensor& x, std::optional<at::Generator> generator = {});

// Per-sample loss (B). x: clean latents (float32), y: caption embeddings; mask null = unmasked
// (mean over C,H,W), else mean over channels -> avg-pool by patch -> (B,T) -> sum over kept
// tokens / kept count. A route (no mask) changes the forward pass only: the loss covers all tokens.
at::Tensor edm_loss_per_sample(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                               const EDMLossNoise& draws, const EDMConfig& config,
                               const model::TokenMask* mask = nullptr,
                               const model::TokenRoute* route = nullptr);

// The same at given noise levels sigma (B,1,1,1) and noise (B,C,H,W) standard normal: the
// validation loss evaluates fixed sigmas.
at::Tensor edm_loss_at_sigma(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                             const at::Tensor& sigma, const at::Tensor& noise,
                             const EDMConfig& config, const model::TokenMask* mask = nullptr,
                             const model::TokenRoute* route = nullptr);

// The batch loss: mean of edm_loss_per_sample.
at::Tensor edm_loss(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                    const EDMLossNoise& draws, const EDMConfig& config,
                    const model::TokenMask* mask = nullptr);

}  // namespace microdit::diffusion
