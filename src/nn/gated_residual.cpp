#include "microdit/nn/gated_residual.h"

#include <torch/autograd.h>

#include "gated_residual_kernels.h"

namespace microdit::nn {
namespace {

#ifdef MICRODIT_WITH_CUDA_KERNELS
bool use_kernels(const at::Tensor& y, at::ScalarType x_dtype) {
  return y.is_cuda() && cuda_kernels::supports(y.scalar_type()) && cuda_kernels::supports(x_dtype);
}
#endif

at::Tensor plain(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
  return x + gate.unsqueeze(1) * y;
}

at::Tensor residual_forward(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (use_kernels(y, x.scalar_type()))
    return cuda_kernels::gated_residual_forward(x.contiguous(), gate, y.contiguous());
#endif
  return plain(x, gate, y);
}

GatedResidualGrads residual_backward(const at::Tensor& grad, const at::Tensor& gate,
                                     const at::Tensor& y, at::ScalarType x_dtype) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (use_kernels(y, x_dtype))
    return cuda_kernels::gated_residual_backward(grad.contiguous(), gate, y.contiguous(), x_dtype);
#endif
  return gated_residual_backward_composite(grad, gate, y, x_dtype);
}

class GatedResidualFunction : public torch::autograd::Function<GatedResidualFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& gate, const at::Tensor& y) {
    // A strided gate (a chunk of the adaLN projection) is read in place.
    const auto gate_rows = gate.stride(1) == 1 ? gate : gate.contiguous();
    ctx->save_for_backward({gate_rows, y});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    return residual_forward(x, gate_rows, y);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &gate = saved[0], &y = saved[1];
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    auto g = residual_backward(grads[0], gate, y, x_dtype);
    return {g.x, g.gate.to(gate.scalar_type()), g.y};
  }
};

}  // namespace

at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
  TORCH_CHECK(x.dim() == 3 && x.sizes() == y.sizes() && gate.dim() == 2 &&
                  gate.size(0) == x.size(0) && gate.size(1) == x.size(2),
              "gated_residual: x and y (B,N,D) of one shape and gate (B,D) expected, got x ",
              x.sizes(), ", gate ", gate.sizes(), ", y ", y.sizes());
  // The fused backward computes the product in one dtype: gate's and y's (autocast gives both
  // the projections' dtype); other pairs keep the plain ops.
  if (gate.scalar_type() != y.scalar_type())
    return plain(x, gate, y);
  return GatedResidualFunction::apply(x, gate, y);
}

GatedResidualGrads gated_residual_backward_composite(const at::Tensor& grad, const at::Tensor& gate,
                                                     const at::Tensor& y, at::ScalarType x_dtype) {
  // The add's backward hands each input the gradient in its dtype; the product's is y's.
  const auto gp = grad.to(y.scalar_type());
  GatedResidualGrads out;
  out.x = grad.to(x_dtype);
  out.y = gp * gate.unsqueeze(1);
  // Products rounded to y's dtype, then summed over the tokens in float32 (as the kernels do;
  // the plain path sums them with float32 accumulation too), or float64 for float64 inputs.
  out.gate = (gp * y).to(y.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).sum(1);
  return out;
}

}  // namespace microdit::nn
