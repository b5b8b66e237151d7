// Self- and cross-attention with QK-normalisation (official utils.SelfAttention/CrossAttention).
// Legend: B batch, N query tokens, L key tokens, D model width, Hd attention width = H * head_dim.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "microdit/nn/execution.h"
#include "microdit/nn/norm.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {

struct AttentionOptions {
  int64_t dim;         // D: input and output width
  int64_t hidden_dim;  // Hd: width of q, k, v
  int64_t num_heads;
  bool qkv_bias = false;
  double norm_eps = 1e-6;
};

// Fast: the QK-normed q, k and v split from their projection by one operation (fused_norm_split)
// where the norms keep the projection's dtype; reference: chunk, then the norms.
class SelfAttentionImpl : public torch::nn::Module, public HasExecution {
 public:
  explicit SelfAttentionImpl(const AttentionOptions& options);
  at::Tensor forward(const at::Tensor& x);  // (B,N,D) -> (B,N,D)
  void custom_init(double proj_std);

  AttentionOptions options;
  Linear qkv{nullptr};                     // (3*Hd, D)
  Linear proj{nullptr};                    // (D, Hd)
  LayerNorm ln_q{nullptr}, ln_k{nullptr};  // non-affine, over the whole Hd
};
TORCH_MODULE(SelfAttention);

class CrossAttentionImpl : public torch::nn::Module, public HasExecution {
 public:
  explicit CrossAttentionImpl(const AttentionOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cond);  // (B,N,D), (B,L,D) -> (B,N,D)
  void custom_init(double proj_std);

  AttentionOptions options;
  Linear q_linear{nullptr};   // (Hd, D)
  Linear kv_linear{nullptr};  // (2*Hd, D)
  Linear proj{nullptr};       // (D, Hd)
  LayerNorm ln_q{nullptr}, ln_k{nullptr};
};
TORCH_MODULE(CrossAttention);

// Plain multi-head scaled-dot-product attention on QK-normalised (B,N,Hd) q and (B,L,Hd) k, v.
at::Tensor multi_head_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                int64_t num_heads);

}  // namespace microdit::nn
