#include "microdit/nn/expert_choice_moe.h"

#include <ATen/ATen.h>

#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/feed_forward.h"
#include "microdit/nn/init.h"

namespace microdit::nn {

FeedForwardECMoeImpl::FeedForwardECMoeImpl(int64_t num_experts_, double expert_capacity_,
                                           int64_t dim, int64_t hidden_dim, int64_t multiple_of)
    : num_experts(num_experts_), expert_capacity(expert_capacity_) {
  const int64_t f = round_up(hidden_dim, multiple_of);
  w1 = register_parameter("w1", at::ones({num_experts, dim, f}));
  w2 = register_parameter("w2", at::ones({num_experts, f, dim}));
  gate = register_module("gate",
                         torch::nn::Linear(torch::nn::LinearOptions(dim, num_experts).bias(false)));
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
  auto u = at::bmm(xin, w1);  // (E,B*K,F)
  // Exact-erf GELU, then the second expert product: (E,B*K,D).
  return RecomputeActivationsGuard::active() ? gelu_bmm(u, w2) : at::bmm(at::gelu(u), w2);
}

at::Tensor FeedForwardECMoeImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "expert-choice MoE expects (B,T,D) input, got ", x.sizes());
  const auto B = x.size(0), T = x.size(1), D = x.size(2);
  auto routing = route(x);
  const auto K = routing.indices.size(2);
  if (MoERowDispatchGuard::active()) {
    // Row of each choice in x as (B*T,D), expert-major (E,B,K) like the experts' batches.
    auto offsets = at::arange(B, routing.indices.options()).mul(T).view({B, 1, 1});
    auto rows = (routing.indices + offsets).transpose(0, 1).reshape({-1});  // (E*B*K)
    auto h = experts(x.reshape({B * T, D}).index_select(0, rows).view({num_experts, B * K, D}));
    auto probs = routing.probs.transpose(0, 1).reshape({-1, 1}).to(h.scalar_type());
    return at::zeros({B * T, D}, h.options())
        .index_add(0, rows, h.view({-1, D}) * probs)
        .view({B, T, D});
  }
  // Gather instead of the official one-hot einsum: same sums, no (B,E,K,T) tensor.
  auto flat_idx = routing.indices.reshape({B, num_experts * K});  // (B,E*K)
  auto xin = at::gather(x, 1, flat_idx.unsqueeze(-1).expand({B, num_experts * K, D}));
  xin = xin.view({B, num_experts, K, D}).transpose(0, 1).reshape({num_experts, B * K, D});
  auto h = experts(xin);
  h = h.view({num_experts, B, K, D}).transpose(0, 1).reshape({B, num_experts * K, D});
  // The official einsum runs in the autocast dtype, so the probabilities are cast to it.
  h = h * routing.probs.reshape({B, num_experts * K, 1}).to(h.scalar_type());
  auto scatter_idx = flat_idx.unsqueeze(-1).expand({B, num_experts * K, D});
  // Tokens no expert chose stay zero; tokens chosen several times get the sum.
  return at::zeros({B, T, D}, h.options()).scatter_add(1, scatter_idx, h);
}

void FeedForwardECMoeImpl::custom_init(double out_std) {
  trunc_normal_(gate->weight, 0.0, 0.02);
  trunc_normal_(w1, 0.0, 0.02);
  trunc_normal_(w2, 0.0, out_std);
}

}  // namespace microdit::nn
