// Expert-choice mixture-of-experts FFN (official `FeedForwardECMoe`; Zhou et al. 2022): each
// expert picks its top-k tokens by router probability, so every expert is exactly full and a
// token may be picked by several experts or by none (then the layer outputs zero for it).
// Legend: B batch, T tokens, D width, E experts, K tokens per expert, F expert hidden width.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "microdit/nn/weight_grad.h"
#include "microdit/util/thread_flag.h"

namespace microdit::nn {

// While one lives on this thread, the experts' tokens are moved by row: index_select from x
// viewed as (B*T,D) straight into expert-major order and index_add back, instead of gather and
// scatter_add with per-element indices and two transposing copies each way. Same products; only
// the order in which a token's several experts are summed differs. Off by default:
// `microdit-bench --moe-rows` measures it.
using MoERowDispatchGuard = util::ThreadFlagGuard<struct MoERowDispatchTag>;
// The first step, the experts' tokens gathered, runs as nn/expert_dispatch's one operation while
// a FusedDispatchGuard (nn/expert_dispatch.h) lives (it replaces either dispatch mode); the last
// step, each expert output weighted by its probability and added into its token's row, as
// nn/expert_combine's one operation while a FusedCombineGuard (nn/expert_combine.h) lives.

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
