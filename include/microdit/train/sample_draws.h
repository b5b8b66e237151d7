// Randomness per sample (so results do not depend on how a batch is split into micro-batches,
// threads or processes): every random draw of a training step for the sample at global stream
// position g is made by its own generator seeded from (seed, step, g).
// Legend: B samples, C H W latent shape, T tokens.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace microdit::train {

struct SampleDraws {
  at::Tensor rnd_normal;    // (B,1,1,1) standard normal: ln(sigma) = rnd * P_std + P_mean
  at::Tensor noise;         // (B,C,H,W) standard normal
  at::Tensor mask_noise;    // (B,T) uniform: deferred-masking order
  at::Tensor keep_caption;  // (B) 1 = keep, 0 = caption dropped
};

uint64_t sample_seed(uint64_t seed, int64_t step, int64_t position);

// Draws on the CPU in a fixed order per sample (rnd_normal, noise, mask_noise, drop), float32.
SampleDraws draw_samples(uint64_t seed, int64_t step, const std::vector<int64_t>& positions,
                         at::IntArrayRef latent_shape, int64_t num_tokens,
                         double caption_drop_prob);

}  // namespace microdit::train
