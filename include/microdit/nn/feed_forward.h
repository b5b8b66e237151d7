// Dense feed-forward layers: the SwiGLU FFN of the DiT blocks (official `FeedForward`) and the
// timm-style two-layer MLP of the embedders (official `Mlp`).
// Legend: D width, F hidden width.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "microdit/nn/execution.h"
#include "microdit/nn/hidden_dims.h"
#include "microdit/nn/norm.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {

// Fast: silu(w1 x) recomputed in backward (nn/activation_recompute.h) instead of kept.
class FeedForwardImpl : public torch::nn::Module, public HasExecution {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden_dim, int64_t multiple_of, bool use_bias);
  at::Tensor forward(const at::Tensor& x);  // w3(silu(w1 x) * w2 x)
  void custom_init(double out_std);

  Linear w1{nullptr};  // (F, D)
  Linear w2{nullptr};  // (F, D)
  Linear w3{nullptr};  // (D, F)
};
TORCH_MODULE(FeedForward);

// fc1 -> GELU(tanh) -> norm (optional LayerNorm) -> fc2, all Linears with bias.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t in, int64_t hidden, int64_t out, std::optional<double> norm_eps);
  at::Tensor forward(const at::Tensor& x);

  Linear fc1{nullptr};
  LayerNorm norm{nullptr};  // null when the MLP has no norm
  Linear fc2{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace microdit::nn
