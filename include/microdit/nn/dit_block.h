// Transformer blocks of MicroDiT (official dit.DiTBlock, AttentionBlockPromptEmbedding and
// utils.T2IFinalLayer).
// Legend: B batch, N tokens, D width, L caption tokens, Dc conditioning width.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>

#include "microdit/nn/attention.h"
#include "microdit/nn/execution.h"
#include "microdit/nn/expert_choice_moe.h"
#include "microdit/nn/feed_forward.h"
#include "microdit/nn/norm.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {

// Everything that differs between the blocks of one model (see model/layerwise_scaling.h).
struct DiTBlockOptions {
  int64_t dim;
  int64_t head_dim;
  double mlp_ratio;
  double qkv_ratio;
  int64_t multiple_of;
  int64_t pooled_emb_dim;  // Dc: width of the conditioning vector c
  double norm_eps = 1e-6;
  double init_std;  // std of the output projections (depth init)
  bool use_bias = false;
  bool moe = false;
  int64_t num_experts = 8;
  double expert_capacity = 2.0;
};

// Pre-norm block with adaLN modulation: gated self-attention, ungated cross-attention to the
// caption, gated FFN (dense SwiGLU or expert-choice MoE). Fast: the gated residuals as one
// operation (nn/gated_residual.h).
class DiTBlockImpl : public torch::nn::Module, public HasExecution {
 public:
  explicit DiTBlockImpl(const DiTBlockOptions& options);
  // x (B,N,D), y (B,L,D), c (B,Dc) -> (B,N,D)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& c);
  void custom_init();
  bool is_moe() const { return options.moe; }
  // x + gate * y with (B,D) gate for x, y (B,N,D): adaLN-Zero's gated residual.
  at::Tensor residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) const;

  DiTBlockOptions options;
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  SelfAttention attn{nullptr};
  CrossAttention cross_attn{nullptr};
  torch::nn::AnyModule mlp;                         // FeedForward or FeedForwardECMoe
  torch::nn::Sequential adaLN_modulation{nullptr};  // GELU(tanh), Linear(Dc, 6*D)
};
TORCH_MODULE(DiTBlock);

// The caption block `y_emb_preprocess`: pre-norm self-attention + SwiGLU, no modulation.
class AttentionBlockPromptEmbeddingImpl : public torch::nn::Module {
 public:
  AttentionBlockPromptEmbeddingImpl(int64_t dim, int64_t head_dim, double mlp_ratio,
                                    int64_t multiple_of, double norm_eps, bool use_bias);
  at::Tensor forward(const at::Tensor& y);  // (B,L,D) -> (B,L,D)
  void custom_init(double init_std = 0.02);

  LayerNorm norm1{nullptr}, norm2{nullptr};
  SelfAttention attn{nullptr};
  FeedForward mlp{nullptr};
};
TORCH_MODULE(AttentionBlockPromptEmbedding);

// adaLN shift/scale, LayerNorm, Linear to p*p*C per token.
class T2IFinalLayerImpl : public torch::nn::Module {
 public:
  T2IFinalLayerImpl(int64_t dim, int64_t patch_size, int64_t out_channels, double norm_eps);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c);  // (B,N,D) -> (B,N,p*p*C)

  LayerNorm norm_final{nullptr};
  Linear linear{nullptr};                           // (p*p*C, D) with bias
  torch::nn::Sequential adaLN_modulation{nullptr};  // GELU(tanh), Linear(D, 2*D)
};
TORCH_MODULE(T2IFinalLayer);

}  // namespace microdit::nn
