// Weight gradients in float32 straight from the matrix product, under autocast. Autocast runs a
// product in bf16 on a bf16 copy of the float32 weight, so autograd gets the weight's gradient
// from a bf16 product, rounded to bf16, and then converts it to float32 (ToCopyBackward): one
// more pass over every weight gradient, reading 2 and writing 4 bytes per parameter. Here the
// product writes the float32 gradient itself (cuBLAS's bf16 x bf16 -> float32 GEMM; elsewhere the
// bf16 operands widened to float32, the same products and float32 sums), so that pass is gone and
// the gradient is not rounded to bf16 on its way. Forward and the input's gradient are autocast's.
// Legend: E experts, M rows per expert, D and F widths.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

#include "microdit/nn/execution.h"

namespace microdit::nn {

// a @ b of two low-precision operands as a float32 result: (m,k) x (k,n) or (E,m,k) x (E,k,n).
at::Tensor product_in_float(const at::Tensor& a, const at::Tensor& b);

// at::linear(x, weight, bias); with fp32_weight_grad, where takes_fp32_weight_grad holds,
// autocast's forward and the weight's and bias's gradients in float32 from the product (and the
// sum) directly.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  bool fp32_weight_grad);

// at::bmm(x, w) for x (E,M,D) and a weight w (E,D,F), on the same terms as linear.
at::Tensor weight_bmm(const at::Tensor& x, const at::Tensor& w, bool fp32_weight_grad);

// Where the float32-gradient path applies: autocast on, a float32 weight that needs a gradient.
bool takes_fp32_weight_grad(const at::Tensor& x, const at::Tensor& weight);

// torch::nn::Linear whose forward is nn::linear, with float32 weight gradients on the fast path:
// the DiT's linear layers (the same parameters, names and initialisation).
class LinearImpl : public torch::nn::LinearImpl, public HasExecution {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  at::Tensor forward(const at::Tensor& x);
};
TORCH_MODULE(Linear);

}  // namespace microdit::nn
