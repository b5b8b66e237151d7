#include "microdit/nn/expert_choice_moe.h"

#include <ATen/ATen.h>

#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/expert_combine.h"
#include "microdit/nn/expert_dispatch.h"
#include "microdit/nn/feed_forward.h"
#include "microdit/nn/init.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {

namespace {

// The tokens each expert chose, (E,B*K,D) in expert-major order, by gather: the official one-hot
// einsum's sums without the (B,E,K,T) tensor.
at::Tensor dispatch(const at::Tensor& x, const at::Tensor& indices) {
  const int64_t B = x.size(0), D = x.size(2);
  const int64_t E = indices.size(1), K = indices.size(2);
  auto xin = at::gather(x, 1, indices.reshape({B, E * K, 1}).expand({B, E * K, D}));
  return xin.view({B, E, K, D}).transpose(0, 1).reshape({E, B * K, D});
}

// The experts' outputs h (E,B*K,D) weighted by their probabilities and summed per token by
// scatter: (B,T,D). Tokens no expert chose stay zero. The official einsum runs in the autocast
// dtype, so the probabilities are cast to it.
at::Tensor combine(const at::Tensor& h, const ExpertChoiceRouting& routing, int64_t T) {
  const int64_t B = routing.indices.size(0), E = routing.indices.size(1);
  const int64_t K = routing.indices.size(2), D = h.size(2);
  auto weighted = h.view({E, B, K, D}).transpose(0, 1).reshape({B, E * K, D}) *
                  routing.probs.reshape({B, E * K, 1}).to(h.scalar_type());
  auto scatter_idx = routing.indices.reshape({B, E * K, 1}).expand_as(weighted);
  return at::zeros({B, T, D}, h.options()).scatter_add(1, scatter_idx, weighted);
}

}  // namespace

FeedForwardECMoeImpl::FeedForwardECMoeImpl(int64_t num_experts_, double expert_capacity_,
                                           int64_t dim, int64_t hidden_dim, int64_t multiple_of)
    : num_experts(num_experts_), expert_capacity(expert_capacity_) {
  const int64_t f = round_up(hidden_dim, multiple_of);
  w1 = register_parameter("w1", at::ones({num_experts, dim, f}));
  w2 = register_parameter("w2", at::ones({num_experts, f, dim}));
  gate =
      register_module("gate", nn::Linear(torch::nn::LinearOptions(dim, num_experts).bias(false)));
}

int64_t FeedForwardECMoeImpl::tokens_per_expert(int64_t num_tokens) const {
  return static_cast<int64_t>(expert_capacity * static_cast<double>(num_tokens) /
                              static_cast<double>(num_experts));
}

ExpertChoiceRouting FeedForwardECMoeImpl::route(const at::Tensor& x) {
  auto probs = at::softmax(gate(x), /*dim=*/-1);  // (B,T,E)
  auto [g, idx] = at::topk(probs.transpose(1, 2), tokens_per_expert(x.size(1)), /*dim=*/-1);
  return {g, idx};  // (B,E,K) each
}

at::Tensor FeedForwardECMoeImpl::experts(const at::Tensor& xin) {
  const bool fast = execution.fast();
  auto u = weight_bmm(xin, w1, fast);  // (E,B*K,F)
  // Exact-erf GELU, then the second expert product: (E,B*K,D).
  return fast ? gelu_bmm(u, w2, /*fp32_weight_grad=*/true) : weight_bmm(at::gelu(u), w2, false);
}

at::Tensor FeedForwardECMoeImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "expert-choice MoE expects (B,T,D) input, got ", x.sizes());
  auto routing = route(x);
  if (!execution.fast()) return combine(experts(dispatch(x, routing.indices)), routing, x.size(1));
  auto h = experts(expert_dispatch(x, routing.indices));
  return expert_combine(h, routing.probs, routing.indices, x.size(1));
}

void FeedForwardECMoeImpl::custom_init(double out_std) {
  trunc_normal_(gate->weight, 0.0, 0.02);
  trunc_normal_(w1, 0.0, 0.02);
  trunc_normal_(w2, 0.0, out_std);
}

}  // namespace microdit::nn
