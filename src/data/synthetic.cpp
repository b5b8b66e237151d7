#include "microdit/data/synthetic.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>
#include <string>

namespace microdit::data {

SyntheticLatents::SyntheticLatents(const SyntheticOptions& o) {
  if (o.num_samples <= 0 || o.latent_channels <= 0 || o.latent_size <= 0 ||
      o.caption_tokens <= 0 || o.caption_channels <= 0) {
    throw std::invalid_argument("synthetic data needs positive sizes, got " +
                                std::to_string(o.num_samples) + " samples of latents [" +
                                std::to_string(o.latent_channels) + "," +
                                std::to_string(o.latent_size) + "," +
                                std::to_string(o.latent_size) + "] and captions [" +
                                std::to_string(o.caption_tokens) + "," +
                                std::to_string(o.caption_channels) + "]");
  }
  // Its own stream: the same run.seed also seeds the model's initialisation and the sample order.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(o.seed, fnv1a64("synthetic")));
  latents_ = at::randn({o.num_samples, o.latent_channels, o.latent_size, o.latent_size}, gen);
  captions_ = at::randn({o.num_samples, o.caption_tokens, o.caption_channels}, gen);
}

Sample SyntheticLatents::get(int64_t index) const {
  check_index(index, size(), "synthetic data");
  return {latents_[index].clone(), captions_[index].clone()};
}

}  // namespace microdit::data
