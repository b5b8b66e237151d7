#include "microdit/nn/expert_dispatch.h"

#include <torch/autograd.h>

#include "microdit/nn/expert_combine.h"

namespace microdit::nn {
namespace {

class ExpertDispatchFunction : public torch::autograd::Function<ExpertDispatchFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& indices) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
    ctx->save_for_backward({indices});
    ctx->saved_data["tokens"] = T;
    return x.reshape({B * T, D})
        .index_select(0, expert_choice_rows(indices, T))
        .view({indices.size(1), B * indices.size(2), D});
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto indices = ctx->get_saved_variables()[0];
    // The combine with every probability 1, whose products are then exact.
    const auto ones = at::ones(indices.sizes(), grads[0].options());
    return {expert_combine_values(grads[0], ones, indices, ctx->saved_data["tokens"].toInt()),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor expert_choice_rows(const at::Tensor& indices, int64_t tokens) {
  const int64_t B = indices.size(0);
  auto offsets = at::arange(B, indices.options()).mul(tokens).view({B, 1, 1});
  return (indices + offsets).transpose(0, 1).reshape({-1});
}

at::Tensor expert_dispatch(const at::Tensor& x, const at::Tensor& indices) {
  TORCH_CHECK(x.dim() == 3 && indices.dim() == 3 && indices.size(0) == x.size(0) &&
                  indices.scalar_type() == at::kLong,
              "expert_dispatch: x (B,T,D) and int64 indices (B,E,K) expected, got x ", x.sizes(),
              ", indices ", indices.sizes(), " ", indices.scalar_type());
  TORCH_CHECK(indices.size(2) <= x.size(1), "expert_dispatch: more choices per expert (",
              indices.size(2), ") than tokens (", x.size(1), ")");
  TORCH_CHECK(x.is_floating_point() && indices.device() == x.device(),
              "expert_dispatch: floating x and the indices on its device expected, got x ",
              x.scalar_type(), " on ", x.device(), ", indices on ", indices.device());
  return ExpertDispatchFunction::apply(x, indices);
}

}  // namespace microdit::nn
