#include "microdit/model/flops.h"

#include "microdit/model/block_plan.h"
#include "microdit/model/masking.h"
#include "microdit/model/token_route.h"
#include "microdit/nn/dit_block.h"
#include "microdit/nn/hidden_dims.h"

namespace microdit::model {
namespace {
// 2 FLOPs per multiply-add of a (rows x in) by (in x out) product.
double matmul(double rows, double in, double out) { return 2.0 * rows * in * out; }

// Dense SwiGLU FFN (w1, w2: d -> f, w3: f -> d) on `rows` tokens.
double swiglu(double rows, int64_t d, int64_t mlp_hidden, int64_t multiple_of) {
  const auto f = nn::swiglu_hidden_dim(mlp_hidden, multiple_of);
  return 3.0 * matmul(rows, d, f);
}

// Attention's QK^T and AV products: queries x keys x width, twice.
double attention_products(double batch, double queries, double keys, int64_t width) {
  return 2.0 * matmul(batch * queries, width, keys);
}

double dit_block(const nn::DiTBlockOptions& o, double batch, double tokens, double caption) {
  const auto d = o.dim;
  const auto h = nn::qkv_hidden_dim(d, o.qkv_ratio, o.head_dim);
  const auto mlp_hidden = static_cast<int64_t>(static_cast<double>(d) * o.mlp_ratio);
  const double rows = batch * tokens;
  double flops = matmul(batch, o.pooled_emb_dim, 6 * d);                  // adaLN modulation
  flops += matmul(rows, d, 3 * h) + matmul(rows, h, d);                   // self-attn qkv, proj
  flops += attention_products(batch, tokens, tokens, h);
  flops += matmul(rows, d, d) + matmul(batch * caption, d, 2 * d);        // cross q, kv
  flops += matmul(rows, d, d) + attention_products(batch, tokens, caption, d);  // proj
  if (o.moe) {
    const auto f = nn::round_up(mlp_hidden, o.multiple_of);
    const auto k = static_cast<int64_t>(o.expert_capacity * tokens / o.num_experts);
    flops += matmul(rows, d, o.num_experts);                              // gate
    flops += 2.0 * matmul(batch * o.num_experts * k, d, f);               // experts w1, w2
  } else {
    flops += swiglu(rows, d, mlp_hidden, o.multiple_of);
  }
  return flops;
}
}  // namespace

double forward_flops(const DiTConfig& c, const StepShape& s) {
  const double B = s.batch, L = s.caption_tokens, T = c.num_patches();
  const double Tk = s.mask_ratio > 0 ? kept_tokens(c.num_patches(), s.mask_ratio) : T;
  const auto D = c.dim;
  const auto patch_in = c.in_channels * c.patch_size * c.patch_size;
  double flops = matmul(B * T, patch_in, D);                              // x_embedder
  flops += matmul(B, 512, D) + matmul(B, D, D);                           // t_embedder
  flops += matmul(B * L, c.caption_channels, D) + matmul(B * L, D, D);    // y_embedder
  // y_emb_preprocess: one caption block of width D, qkv ratio 1, SwiGLU ratio 4.
  flops += matmul(B * L, D, 3 * D) + matmul(B * L, D, D) + attention_products(B, L, L, D);
  flops += swiglu(B * L, D, 4 * D, c.multiple_of);
  flops += 2.0 * matmul(B, D, D);                                         // pooled_y_emb_process
  if (c.use_patch_mixer) {
    const auto Dm = c.patch_mixer_dim;
    if (Dm != D) flops += matmul(B * T, D, Dm) + matmul(B * L, D, Dm) + matmul(B * Tk, Dm, D);
    for (const auto& o : mixer_blocks(c)) flops += dit_block(o, B, T, L);
  }
  const auto blocks = backbone_blocks(c);
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto index = static_cast<int64_t>(i);
    const bool routed = s.route_ratio > 0 && index >= s.route_start && index <= s.route_end;
    const double tokens = routed ? routed_tokens(c.num_patches(), s.route_ratio) : Tk;
    flops += dit_block(blocks[i], B, tokens, L);
  }
  flops += matmul(B, D, 2 * D) + matmul(B * Tk, D, patch_in);             // final layer
  return flops;
}

}  // namespace microdit::model
