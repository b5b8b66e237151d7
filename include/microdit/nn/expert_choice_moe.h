// Expert-choice mixture-of-experts FFN (official `FeedForwardECMoe`; Zhou et al. 2022): each
// expert picks its top-k tokens by router probability, so every expert is exactly full and a
// token may be picked by several experts or by none (then the layer outputs zero for it).
// Legend: B batch, T tokens, D width, E experts, K tokens per expert, F expert hidden width.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace microdit::nn {

struct ExpertChoiceRouting {
  at::Tensor probs;    // router probability of each choice: (B,E,K)
  at::Tensor indices;  // token index of each choice: (B,E,K) int64
};

class FeedForwardECMoeImpl : public torch::nn::Module {
 public:
  FeedForwardECMoeImpl(int64_t num_experts, double expert_capacity, int64_t dim, int64_t hidden_dim,
                       int64_t multiple_of);
  at::Tensor forward(const at::Tensor& x);         // (B,T,D) -> (B,T,D)
  ExpertChoiceRouting route(const at::Tensor& x);  // softmax over experts, top-k over tokens
  int64_t tokens_per_expert(int64_t num_tokens) const;
  void custom_init(double out_std);

  int64_t num_experts;
  double expert_capacity;
  at::Tensor w1;                    // (E, D, F)
  at::Tensor w2;                    // (E, F, D)
  torch::nn::Linear gate{nullptr};  // (E, D), no bias
};
TORCH_MODULE(FeedForwardECMoe);

}  // namespace microdit::nn
