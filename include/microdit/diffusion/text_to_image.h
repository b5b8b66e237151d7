// Prompts to images, as the official LatentDiffusion.generate: tokenize and encode each prompt
// with the CLIP text tower (no caption cleaning at sampling time), run the EDM Heun sampler with
// classifier-free guidance (all-zero caption as the unconditional input), decode the latents
// with the VAE and map [-1, 1] to [0, 1].
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/encoders/pipeline.h"
#include "microdit/model/microdit.h"

namespace microdit::diffusion {

struct TextToImageOptions {
  int64_t steps = 30;
  double cfg = 5.0;  // guidance scale; 1 = unguided
  uint64_t seed = 0;
  int64_t batch_size = 8;
  // bf16 autocast around the DiT on CUDA (the sampler keeps x and sigma in float64).
  bool bf16 = true;
};

// (N,3,H,W) float32 in [0,1] on the CPU, one image per prompt, H = W = latent size * the VAE's
// factor. Image i starts from standard-normal latents drawn by a CPU generator seeded seed + i,
// so an image depends on its prompt, its index and the seed, not on the batch size (with
// S_churn > 0 the churn noise is drawn per batch).
at::Tensor text_to_image(model::DiT& dit, encoders::PipelineEncoders& encoders,
                         const std::vector<std::string>& prompts, const TextToImageOptions& options,
                         const EDMConfig& edm);

}  // namespace microdit::diffusion
