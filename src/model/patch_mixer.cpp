#include "microdit/model/patch_mixer.h"

#include <torch/nn/modules/linear.h>

#include "microdit/model/block_plan.h"
#include "microdit/nn/dit_block.h"
#include "microdit/nn/norm.h"

namespace microdit::model {
namespace {
torch::nn::Sequential width_map(int64_t in, int64_t out, double eps, bool bias) {
  return torch::nn::Sequential(nn::LayerNorm(in, eps),
                               nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)));
}

at::Tensor apply(torch::nn::Sequential& map, const at::Tensor& x) {
  return map->is_empty() ? x : map->forward(x);
}
}  // namespace

PatchMixer::PatchMixer(const DiTConfig& c, torch::nn::Module& owner) {
  blocks = owner.register_module("patch_mixer", torch::nn::ModuleList());
  for (const auto& options : mixer_blocks(c)) blocks->push_back(nn::DiTBlock(options));
  if (c.patch_mixer_dim != c.dim) {
    const auto D = c.dim, Dm = c.patch_mixer_dim;
    map_xin =
        owner.register_module("patch_mixer_map_xin", width_map(D, Dm, c.norm_eps, c.use_bias));
    map_xout =
        owner.register_module("patch_mixer_map_xout", width_map(Dm, D, c.norm_eps, c.use_bias));
    map_y = owner.register_module("patch_mixer_map_y", width_map(D, Dm, c.norm_eps, c.use_bias));
  } else {
    map_xin = torch::nn::Sequential();
    map_xout = torch::nn::Sequential();
    map_y = torch::nn::Sequential();
  }
}

at::Tensor PatchMixer::mix(at::Tensor x, const at::Tensor& y, const at::Tensor& c) {
  x = apply(map_xin, x);
  const auto y_mixer = apply(map_y, y);
  for (const auto& block : *blocks) x = block->as<nn::DiTBlock>()->forward(x, y_mixer, c);
  return x;
}

at::Tensor PatchMixer::map_out(const at::Tensor& x) { return apply(map_xout, x); }

void PatchMixer::custom_init() {
  for (const auto& block : *blocks) block->as<nn::DiTBlock>()->custom_init();
}

}  // namespace microdit::model
