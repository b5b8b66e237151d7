#include "microdit/nn/expert_combine.h"

#include <torch/autograd.h>

#include "expert_combine_kernels.h"

namespace microdit::nn {
namespace {

#ifdef MICRODIT_WITH_CUDA_KERNELS
bool use_kernels(const at::Tensor& h) {
  return h.is_cuda() && cuda_kernels::supports(h.scalar_type());
}
#endif

at::ScalarType sum_type(const at::Tensor& h) {
  return h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// h's rows in batch-major order (B,E,K,D), a view.
at::Tensor batch_major(const at::Tensor& h, const at::Tensor& indices) {
  return h.view({indices.size(1), indices.size(0), indices.size(2), h.size(2)})
      .permute({1, 0, 2, 3});
}

// indices as (B,E*K,D) for gather and scatter_add over the token dim.
at::Tensor token_index(const at::Tensor& indices, int64_t D) {
  const int64_t B = indices.size(0), EK = indices.size(1) * indices.size(2);
  return indices.reshape({B, EK, 1}).expand({B, EK, D});
}

ExpertCombineGrads combine_backward(const at::Tensor& grad, const at::Tensor& h,
                                    const at::Tensor& probs, const at::Tensor& indices) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (use_kernels(h)) {
    return cuda_kernels::expert_combine_backward(grad.contiguous(), h.contiguous(),
                                                 probs.contiguous(), indices.contiguous());
  }
#endif
  return expert_combine_backward_composite(grad, h, probs, indices);
}

class ExpertCombineFunction : public torch::autograd::Function<ExpertCombineFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h,
                            const at::Tensor& probs, const at::Tensor& indices, int64_t tokens) {
    const auto p = probs.to(sum_type(h));
    ctx->save_for_backward({h, p, indices});
    ctx->saved_data["probs_dtype"] = static_cast<int64_t>(probs.scalar_type());
    return expert_combine_values(h, p, indices, tokens);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &p = saved[1], &indices = saved[2];
    const auto probs_dtype = static_cast<at::ScalarType>(ctx->saved_data["probs_dtype"].toInt());
    auto g = combine_backward(grads[0].to(h.scalar_type()), h, p, indices);
    return {g.h, g.probs.to(probs_dtype), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor expert_combine(const at::Tensor& h, const at::Tensor& probs, const at::Tensor& indices,
                          int64_t tokens) {
  TORCH_CHECK(indices.dim() == 3 && probs.sizes() == indices.sizes() &&
                  indices.scalar_type() == at::kLong && h.dim() == 3 &&
                  h.size(0) == indices.size(1) && h.size(1) == indices.size(0) * indices.size(2),
              "expert_combine: h (E,B*K,D) with probs and int64 indices (B,E,K) expected, got h ",
              h.sizes(), ", probs ", probs.sizes(), ", indices ", indices.sizes(), " ",
              indices.scalar_type());
  TORCH_CHECK(indices.size(2) <= tokens, "expert_combine: more choices per expert (",
              indices.size(2), ") than tokens (", tokens, ")");
  TORCH_CHECK(h.is_floating_point() && probs.is_floating_point() && probs.device() == h.device() &&
                  indices.device() == h.device(),
              "expert_combine: floating h and probs and the indices on one device expected, got h ",
              h.scalar_type(), " on ", h.device(), ", probs ", probs.scalar_type(), " on ",
              probs.device(), ", indices on ", indices.device());
  return ExpertCombineFunction::apply(h, probs, indices, tokens);
}

at::Tensor expert_combine_values(const at::Tensor& h, const at::Tensor& probs,
                                 const at::Tensor& indices, int64_t tokens) {
  // The kernels read float32 probabilities (exact for bf16 ones) and round them to h's dtype.
  const auto p = probs.to(sum_type(h));
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (use_kernels(h)) {
    return cuda_kernels::expert_combine_forward(h.contiguous(), p.contiguous(),
                                                expert_choice_slots(indices, tokens));
  }
#endif
  return expert_combine_forward_composite(h, p, indices, tokens);
}

at::Tensor expert_choice_slots(const at::Tensor& indices, int64_t tokens) {
  const int64_t B = indices.size(0), E = indices.size(1), K = indices.size(2);
  const auto int_options = indices.options().dtype(at::kInt);
  // Choice (b,e,k) of token t goes to slot t*E + e of sample b and holds k.
  const auto position = indices * E + at::arange(E, indices.options()).view({1, E, 1});  // (B,E,K)
  const auto k = at::arange(K, int_options).view({1, 1, K}).expand({B, E, K});
  return at::full({B, tokens * E}, -1, int_options)
      .scatter_(1, position.reshape({B, E * K}), k.reshape({B, E * K}))
      .view({B, tokens, E});
}

at::Tensor expert_combine_forward_composite(const at::Tensor& h, const at::Tensor& probs,
                                            const at::Tensor& indices, int64_t tokens) {
  const int64_t B = indices.size(0), EK = indices.size(1) * indices.size(2), D = h.size(2);
  const auto p = probs.to(h.scalar_type()).unsqueeze(-1);
  // Products in h's dtype, summed in float32 and rounded once. On the CPU scatter_add adds a
  // token's choices in expert order, as the kernel does; on CUDA (no kernels built) it adds them
  // by atomics, in no fixed order.
  const auto products = (batch_major(h, indices) * p).to(sum_type(h)).reshape({B, EK, D});
  return at::zeros({B, tokens, D}, h.options().dtype(sum_type(h)))
      .scatter_add(1, token_index(indices, D), products)
      .to(h.scalar_type());
}

ExpertCombineGrads expert_combine_backward_composite(const at::Tensor& grad, const at::Tensor& h,
                                                     const at::Tensor& probs,
                                                     const at::Tensor& indices) {
  const int64_t B = indices.size(0), E = indices.size(1), K = indices.size(2), D = h.size(2);
  const auto g = grad.gather(1, token_index(indices, D)).view({B, E, K, D});
  ExpertCombineGrads out;
  out.h =
      (g * probs.to(h.scalar_type()).unsqueeze(-1)).permute({1, 0, 2, 3}).reshape({E, B * K, D});
  out.probs =
      (g * batch_major(h, indices)).to(sum_type(h)).sum(-1).to(h.scalar_type()).to(sum_type(h));
  return out;
}

}  // namespace microdit::nn
