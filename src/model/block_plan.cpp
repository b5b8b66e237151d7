#include "microdit/model/block_plan.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

namespace microdit::model {

std::vector<double> numpy_linspace(double start, double stop, int64_t num) {
  std::vector<double> out(static_cast<size_t>(num));
  if (num == 0) return out;
  if (num == 1) return {start};
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) out[i] = static_cast<double>(i) * step + start;
  out.back() = stop;
  return out;
}

std::vector<double> expand_ratios(const std::vector<double>& ratios, int64_t depth) {
  const auto n = static_cast<int64_t>(ratios.size());
  if (n == depth) return ratios;
  if (n == 0 || depth % n != 0) {
    throw std::invalid_argument(fmt::format(
        "a ratio list of length {} does not divide depth {}: give one ratio per block or a list "
        "whose length divides the depth",
        n, depth));
  }
  std::vector<double> out;
  for (double r : ratios) out.insert(out.end(), static_cast<size_t>(depth / n), r);
  return out;
}

std::vector<bool> backbone_moe_blocks(int64_t depth, int64_t every_n) {
  std::vector<bool> moe(static_cast<size_t>(depth), false);
  for (int64_t i = 0; i + 1 < depth; ++i) moe[i] = (i + 1) % every_n == 0;
  return moe;
}

std::vector<bool> mixer_moe_blocks(int64_t mixer_depth, int64_t every_n) {
  std::vector<bool> moe(static_cast<size_t>(mixer_depth), false);
  for (int64_t i = 1; i < mixer_depth; ++i) moe[i] = (i + 1) % every_n == 0;
  return moe;
}

std::vector<nn::DiTBlockOptions> backbone_blocks(const DiTConfig& c) {
  const auto qkv = expand_ratios(c.qkv_multipliers, c.depth);
  const auto ffn = expand_ratios(c.ffn_multipliers, c.depth);
  const auto moe = backbone_moe_blocks(c.depth, c.experts_every_n);
  std::vector<nn::DiTBlockOptions> blocks;
  for (int64_t i = 0; i < c.depth; ++i) {
    const double std = c.depth_init ? 0.02 / std::sqrt(2.0 * static_cast<double>(i + 1))
                                    : 0.02 / std::sqrt(2.0 * static_cast<double>(c.depth));
    blocks.push_back({c.dim, c.head_dim, ffn[i], qkv[i], c.multiple_of, c.dim, c.norm_eps, std,
                      c.use_bias, moe[i], c.num_experts, c.expert_capacity});
  }
  return blocks;
}

std::vector<nn::DiTBlockOptions> mixer_blocks(const DiTConfig& c) {
  const auto moe = mixer_moe_blocks(c.patch_mixer_depth, c.experts_every_n);
  // Mixer blocks never use depth init: std 0.02/sqrt(2*backbone depth).
  const double std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.depth));
  std::vector<nn::DiTBlockOptions> blocks;
  for (int64_t i = 0; i < c.patch_mixer_depth; ++i) {
    blocks.push_back({c.patch_mixer_dim, c.head_dim, c.patch_mixer_mlp_ratio,
                      c.patch_mixer_qkv_ratio, c.multiple_of, c.dim, c.norm_eps, std, c.use_bias,
                      moe[i], c.num_experts, c.expert_capacity});
  }
  return blocks;
}

}  // namespace microdit::model
