#include "microdit/model/param_count.h"

#include "microdit/model/block_plan.h"
#include "microdit/nn/hidden_dims.h"

namespace microdit::model {
namespace {
int64_t linear(int64_t in, int64_t out, bool bias) { return in * out + (bias ? out : 0); }

int64_t self_attention(int64_t d, int64_t hidden, bool bias) {
  return linear(d, 3 * hidden, bias) + linear(hidden, d, bias);
}

int64_t swiglu(int64_t d, int64_t hidden, int64_t multiple_of, bool bias) {
  const int64_t f = nn::swiglu_hidden_dim(hidden, multiple_of);
  return 2 * linear(d, f, bias) + linear(f, d, bias);
}

int64_t dit_block(const nn::DiTBlockOptions& o) {
  const int64_t d = o.dim;
  const int64_t hidden = nn::qkv_hidden_dim(d, o.qkv_ratio, o.head_dim);
  const auto mlp_hidden = static_cast<int64_t>(static_cast<double>(d) * o.mlp_ratio);
  int64_t n = 3 * d;  // norm1..3
  n += self_attention(d, hidden, o.use_bias);
  n += linear(d, d, o.use_bias) + linear(d, 2 * d, o.use_bias) + linear(d, d, o.use_bias);
  if (o.moe) {
    const int64_t f = nn::round_up(mlp_hidden, o.multiple_of);
    n += 2 * o.num_experts * d * f + linear(d, o.num_experts, false);
  } else {
    n += swiglu(d, mlp_hidden, o.multiple_of, o.use_bias);
  }
  return n + linear(o.pooled_emb_dim, 6 * d, true);
}

int64_t mlp(int64_t in, int64_t hidden, int64_t out, bool norm) {
  return linear(in, hidden, true) + (norm ? hidden : 0) + linear(hidden, out, true);
}
}  // namespace

int64_t count_parameters(const DiTConfig& c) {
  const int64_t D = c.dim, p = c.patch_size;
  int64_t n = D * c.in_channels * p * p + D;          // x_embedder
  n += mlp(512, D, D, /*norm=*/false);                // t_embedder
  n += mlp(c.caption_channels, D, D, /*norm=*/true);  // y_embedder
  n += 2 * D + self_attention(D, D, c.use_bias) + swiglu(D, 4 * D, c.multiple_of, c.use_bias);
  n += mlp(D, D, D, /*norm=*/true);  // pooled_y_emb_process
  if (c.use_patch_mixer) {
    for (const auto& o : mixer_blocks(c)) n += dit_block(o);
    if (c.patch_mixer_dim != D) {
      const int64_t Dm = c.patch_mixer_dim;
      n += 2 * (D + linear(D, Dm, c.use_bias)) + Dm + linear(Dm, D, c.use_bias);
    }
  }
  for (const auto& o : backbone_blocks(c)) n += dit_block(o);
  n += D + linear(D, p * p * c.in_channels, true) + linear(D, 2 * D, true);  // final_layer
  return n;
}

}  // namespace microdit::model
