#include "microdit/nn/attention.h"

#include <ATen/ATen.h>

#include "microdit/nn/init.h"

namespace microdit::nn {
namespace {
Linear make_linear(int64_t in, int64_t out, bool bias) {
  return nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// The `chunks` slices of a projection, the first QK-normed by ln_q and (for three chunks) the
// second by ln_k; the norms' outputs in the projection's dtype (attention runs in it). One
// operation on the fast path where the norms keep that dtype.
std::vector<at::Tensor> qk_normed_chunks(const at::Tensor& proj, int64_t chunks, LayerNorm& ln_q,
                                         LayerNorm& ln_k, const Execution& execution) {
  const int64_t normed = chunks == 3 ? 2 : 1;
  if (execution.fast() &&
      norm_output_dtype(proj, execution.low_precision_norm) == proj.scalar_type())
    return fused_norm_split(proj, chunks, normed, ln_q->eps);
  auto parts = proj.chunk(chunks, /*dim=*/-1);
  // Under autocast the norm may return float32; attention runs in the projections' dtype.
  for (int64_t i = 0; i < normed; ++i)
    parts[i] = (i == 0 ? ln_q : ln_k)->forward(parts[i]).to(parts[i].scalar_type());
  return parts;
}
}  // namespace

at::Tensor multi_head_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                int64_t num_heads) {
  const auto B = q.size(0), N = q.size(1), Hd = q.size(2);
  const auto head_dim = Hd / num_heads;
  auto heads = [&](const at::Tensor& t) {  // (B,L,Hd) -> (B,H,L,head_dim)
    return t.view({B, t.size(1), num_heads, head_dim}).transpose(1, 2);
  };
  auto out = at::scaled_dot_product_attention(heads(q), heads(k), heads(v));
  return out.transpose(1, 2).contiguous().view({B, N, Hd});
}

SelfAttentionImpl::SelfAttentionImpl(const AttentionOptions& opts) : options(opts) {
  TORCH_CHECK(opts.hidden_dim % opts.num_heads == 0, "attention width ", opts.hidden_dim,
              " is not divisible by ", opts.num_heads, " heads");
  qkv = register_module("qkv", make_linear(opts.dim, 3 * opts.hidden_dim, opts.qkv_bias));
  proj = register_module("proj", make_linear(opts.hidden_dim, opts.dim, opts.qkv_bias));
  ln_q = register_module("ln_q", LayerNorm(opts.hidden_dim, opts.norm_eps, /*affine=*/false));
  ln_k = register_module("ln_k", LayerNorm(opts.hidden_dim, opts.norm_eps, /*affine=*/false));
}

at::Tensor SelfAttentionImpl::forward(const at::Tensor& x) {
  // The official code splits (B,N,3*Hd) as (B,N,3,H,head_dim): q, k, v are contiguous Hd slices.
  const auto qkv_out = qk_normed_chunks(qkv(x), 3, ln_q, ln_k, execution);
  return proj(multi_head_attention(qkv_out[0], qkv_out[1], qkv_out[2], options.num_heads));
}

void SelfAttentionImpl::custom_init(double proj_std) {
  trunc_normal_(qkv->weight, 0.0, 0.02);
  trunc_normal_(proj->weight, 0.0, proj_std);
}

CrossAttentionImpl::CrossAttentionImpl(const AttentionOptions& opts) : options(opts) {
  TORCH_CHECK(opts.hidden_dim % opts.num_heads == 0, "attention width ", opts.hidden_dim,
              " is not divisible by ", opts.num_heads, " heads");
  q_linear = register_module("q_linear", make_linear(opts.dim, opts.hidden_dim, opts.qkv_bias));
  kv_linear =
      register_module("kv_linear", make_linear(opts.dim, 2 * opts.hidden_dim, opts.qkv_bias));
  proj = register_module("proj", make_linear(opts.hidden_dim, opts.dim, opts.qkv_bias));
  ln_q = register_module("ln_q", LayerNorm(opts.hidden_dim, opts.norm_eps, /*affine=*/false));
  ln_k = register_module("ln_k", LayerNorm(opts.hidden_dim, opts.norm_eps, /*affine=*/false));
}

at::Tensor CrossAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cond) {
  const auto q = qk_normed_chunks(q_linear(x), 1, ln_q, ln_k, execution)[0];
  const auto kv = qk_normed_chunks(kv_linear(cond), 2, ln_k, ln_k, execution);
  return proj(multi_head_attention(q, kv[0], kv[1], options.num_heads));
}

void CrossAttentionImpl::custom_init(double proj_std) {
  trunc_normal_(q_linear->weight, 0.0, 0.02);
  trunc_normal_(kv_linear->weight, 0.0, 0.02);
  trunc_normal_(proj->weight, 0.0, proj_std);
}

}  // namespace microdit::nn
