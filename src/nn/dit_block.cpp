#include "microdit/nn/dit_block.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>

#include "microdit/nn/gated_residual.h"
#include "microdit/nn/init.h"

namespace microdit::nn {
namespace {
torch::nn::Sequential make_modulation(int64_t cond_dim, int64_t out_dim) {
  return torch::nn::Sequential(torch::nn::GELU(torch::nn::GELUOptions().approximate("tanh")),
                               nn::Linear(cond_dim, out_dim));
}
}  // namespace

DiTBlockImpl::DiTBlockImpl(const DiTBlockOptions& opts) : options(opts) {
  const int64_t hidden = qkv_hidden_dim(opts.dim, opts.qkv_ratio, opts.head_dim);
  const int64_t mlp_hidden = static_cast<int64_t>(static_cast<double>(opts.dim) * opts.mlp_ratio);
  norm1 = register_module("norm1", LayerNorm(opts.dim, opts.norm_eps));
  attn = register_module("attn",
                         SelfAttention(AttentionOptions{opts.dim, hidden, hidden / opts.head_dim,
                                                        opts.use_bias, opts.norm_eps}));
  // Cross-attention always uses the full width (official compress_xattn=False).
  cross_attn = register_module(
      "cross_attn", CrossAttention(AttentionOptions{opts.dim, opts.dim, opts.dim / opts.head_dim,
                                                    opts.use_bias, opts.norm_eps}));
  norm2 = register_module("norm2", LayerNorm(opts.dim, opts.norm_eps));
  norm3 = register_module("norm3", LayerNorm(opts.dim, opts.norm_eps));
  if (opts.moe) {
    mlp = torch::nn::AnyModule(FeedForwardECMoe(opts.num_experts, opts.expert_capacity, opts.dim,
                                                mlp_hidden, opts.multiple_of));
  } else {
    mlp = torch::nn::AnyModule(FeedForward(opts.dim, mlp_hidden, opts.multiple_of, opts.use_bias));
  }
  register_module("mlp", mlp.ptr());
  adaLN_modulation =
      register_module("adaLN_modulation", make_modulation(opts.pooled_emb_dim, 6 * opts.dim));
}

at::Tensor DiTBlockImpl::forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& c) {
  auto m = adaLN_modulation->forward(c).chunk(6, /*dim=*/1);
  const auto &shift_msa = m[0], &scale_msa = m[1], &gate_msa = m[2];
  const auto &shift_mlp = m[3], &scale_mlp = m[4], &gate_mlp = m[5];
  // Each norm hands its input on as the residual term (nn::LayerNormImpl::forward_with_residual).
  auto n1 = norm1->forward_with_residual(x, shift_msa, scale_msa);
  auto h = residual(n1.residual, gate_msa, attn(n1.normed));
  auto n2 = norm2->forward_with_residual(h);
  h = n2.residual + cross_attn(n2.normed, y);
  auto n3 = norm3->forward_with_residual(h, shift_mlp, scale_mlp);
  return residual(n3.residual, gate_mlp, mlp.forward<at::Tensor>(n3.normed));
}

at::Tensor DiTBlockImpl::residual(const at::Tensor& x, const at::Tensor& gate,
                                  const at::Tensor& y) const {
  return execution.fast() ? gated_residual(x, gate, y) : x + gate.unsqueeze(1) * y;
}

void DiTBlockImpl::custom_init() {
  for (auto* norm : {&norm1, &norm2, &norm3}) (*norm)->reset_parameters();
  attn->custom_init(options.init_std);
  cross_attn->custom_init(options.init_std);
  if (options.moe) {
    mlp.get<FeedForwardECMoe>()->custom_init(options.init_std);
  } else {
    mlp.get<FeedForward>()->custom_init(options.init_std);
  }
}

AttentionBlockPromptEmbeddingImpl::AttentionBlockPromptEmbeddingImpl(int64_t dim, int64_t head_dim,
                                                                     double mlp_ratio,
                                                                     int64_t multiple_of,
                                                                     double norm_eps,
                                                                     bool use_bias) {
  TORCH_CHECK(dim % head_dim == 0, "caption block width ", dim, " is not divisible by head_dim ",
              head_dim);
  norm1 = register_module("norm1", LayerNorm(dim, norm_eps));
  attn = register_module(
      "attn", SelfAttention(AttentionOptions{dim, dim, dim / head_dim, use_bias, norm_eps}));
  norm2 = register_module("norm2", LayerNorm(dim, norm_eps));
  mlp = register_module("mlp",
                        FeedForward(dim, static_cast<int64_t>(static_cast<double>(dim) * mlp_ratio),
                                    multiple_of, use_bias));
}

at::Tensor AttentionBlockPromptEmbeddingImpl::forward(const at::Tensor& y) {
  auto n1 = norm1->forward_with_residual(y);
  auto h = n1.residual + attn(n1.normed);
  auto n2 = norm2->forward_with_residual(h);
  return n2.residual + mlp(n2.normed);
}

void AttentionBlockPromptEmbeddingImpl::custom_init(double init_std) {
  attn->custom_init(init_std);
  mlp->custom_init(init_std);
}

T2IFinalLayerImpl::T2IFinalLayerImpl(int64_t dim, int64_t patch_size, int64_t out_channels,
                                     double norm_eps) {
  norm_final = register_module("norm_final", LayerNorm(dim, norm_eps));
  linear = register_module("linear", nn::Linear(dim, patch_size * patch_size * out_channels));
  adaLN_modulation = register_module("adaLN_modulation", make_modulation(dim, 2 * dim));
}

at::Tensor T2IFinalLayerImpl::forward(const at::Tensor& x, const at::Tensor& c) {
  auto m = adaLN_modulation->forward(c).chunk(2, /*dim=*/1);
  return linear(norm_final->forward_modulated(x, /*shift=*/m[0], /*scale=*/m[1]));
}

}  // namespace microdit::nn
