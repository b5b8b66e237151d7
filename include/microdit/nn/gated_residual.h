// The gated residual of the adaLN-Zero DiT blocks, x + gate * y with one gate per sample and
// channel, as one operation. The plain path runs it as a broadcasting multiply and an add, and
// its backward as two multiplies, a cast where x is wider than y, and a sum over the tokens; the
// fused path reads x and y once and writes the sum once, and in backward reads the gradient and
// y once, writing y's gradient and per-chunk gate sums (CUDA kernels: gated_residual_kernels.cu).
// Legend: B samples, N tokens per sample, D channels.
#pragma once
#include <ATen/ATen.h>

namespace microdit::nn {

// x + gate.unsqueeze(1) * y for x, y (B,N,D) and gate (B,D) as one operation with the plain ops'
// dtypes and rounding (the product in the dtype of gate and y, the sum in the promoted dtype),
// differentiable in all three. Where gate's and y's dtypes differ, the plain ops.
at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y);

// The fused operation's backward in ATen ops (any device), as the kernels compute it; the
// CUDA kernels are tested against it. grad: (B,N,D) in the output's dtype; gate (B,D) and y
// (B,N,D) share a dtype. The gate's gradient comes back in float32 (float64 for float64 y).
struct GatedResidualGrads {
  at::Tensor x;     // (B,N,D) in x's dtype: grad itself where the dtypes agree
  at::Tensor gate;  // (B,D) float32, or float64
  at::Tensor y;     // (B,N,D) in y's dtype
};
GatedResidualGrads gated_residual_backward_composite(const at::Tensor& grad, const at::Tensor& gate,
                                                     const at::Tensor& y, at::ScalarType x_dtype);

}  // namespace microdit::nn
