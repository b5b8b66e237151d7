// Expert-choice mixture-of-experts FFN (official `FeedForwardECMoe`; Zhou et al. 2022): each
// expert picks its top-k tokens by router probability, so every expert is exactly full and a
// token may be picked by several experts or by none (then the layer outputs zero for it).
// Legend: B batch, T tokens, D width, E experts, K tokens per expert, F expert hidden width.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "microdit/nn/execution.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {

struct ExpertChoiceRouting {
  at::Tensor probs;    // router probability of each choice: (B,E,K)
  at::Tensor indices;  // token index of each choice: (B,E,K) int64
};

// Reference: the experts' tokens gathered and their outputs scattered back with per-element
// indices (the official one-hot einsums' sums without the (B,E,K,T) one-hot tensor). Fast: the
// gathering and the weighted combine as one operation each (nn/expert_dispatch.h,
// nn/expert_combine.h), gelu(u) recomputed in backward, float32 expert weight gradients.
class FeedForwardECMoeImpl : public torch::nn::Module, public HasExecution {
 public:
  FeedForwardECMoeImpl(int64_t num_experts, double expert_capacity, int64_t dim, int64_t hidden_dim,
                       int64_t multiple_of);
  at::Tensor forward(const at::Tensor& x);         // (B,T,D) -> (B,T,D)
  ExpertChoiceRouting route(const at::Tensor& x);  // softmax over experts, top-k over tokens
  int64_t tokens_per_expert(int64_t num_tokens) const;
  // The two expert products on tokens (E,B*K,D) in expert-major order -> (E,B*K,D).
  at::Tensor experts(const at::Tensor& xin);
  void custom_init(double out_std);

  int64_t num_experts;
  double expert_capacity;
  at::Tensor w1;                    // (E, D, F)
  at::Tensor w2;                    // (E, F, D)
  Linear gate{nullptr};             // (E, D), no bias
};
TORCH_MODULE(FeedForwardECMoe);

}  // namespace microdit::nn
