// data.kind synthetic: random samples of a model's shapes, so that any config (the four stages
// included) trains or is timed without data on disk. A fixed pool of distinct samples is drawn
// once from the seed; get() returns copies of them, so a step pays a real reader's memcpy and not
// the random number generation.
// Config keys (train/config.h, data section): synthetic_samples (the pool's size, > 0; default
// 256), caption_tokens (L, > 0; default 77); C, H = W and Cy come from the model.
// Legend: C latent channels, H W latent size, L caption tokens, Cy caption channels.
#pragma once
#include <cstdint>

#include "microdit/data/dataset.h"

namespace microdit::data {

struct SyntheticOptions {
  int64_t num_samples = 256;
  int64_t latent_channels = 4;  // C
  int64_t latent_size = 32;     // H = W
  int64_t caption_tokens = 77;  // L
  int64_t caption_channels = 1024;  // Cy
  uint64_t seed = 0;
};

// Latents and captions standard normal (the scale of VAE latents and normalised text features).
class SyntheticLatents : public Dataset {
 public:
  explicit SyntheticLatents(const SyntheticOptions& options);
  int64_t size() const override { return latents_.size(0); }
  Sample get(int64_t index) const override;

 private:
  at::Tensor latents_;   // (N,C,H,W) float32
  at::Tensor captions_;  // (N,L,Cy) float32
};

}  // namespace microdit::data
