#include "microdit/train/sample_draws.h"

#include <ATen/CPUGeneratorImpl.h>

namespace microdit::train {
namespace {
// splitmix64 finaliser: decorrelates nearby (seed, step, position) triples.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t step, int64_t position) {
  return mix(mix(mix(seed) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(position));
}

SampleDraws draw_samples(uint64_t seed, int64_t step, const std::vector<int64_t>& positions,
                         at::IntArrayRef latent_shape, int64_t num_tokens,
                         double caption_drop_prob) {
  std::vector<at::Tensor> rnd, noise, mask, keep;
  for (const int64_t position : positions) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(sample_seed(seed, step, position));
    rnd.push_back(at::randn({1, 1, 1}, gen));
    noise.push_back(at::randn(latent_shape, gen));
    mask.push_back(at::rand({num_tokens}, gen));
    keep.push_back((at::rand({1}, gen) >= caption_drop_prob).to(at::kFloat));
  }
  return {at::stack(rnd), at::stack(noise), at::stack(mask), at::cat(keep)};
}

}  // namespace microdit::train
