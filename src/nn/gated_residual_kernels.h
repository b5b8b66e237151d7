// The CUDA kernels of nn/gated_residual (gated_residual_kernels.cu), built only where nvcc and a
// CUDA LibTorch are found (MICRODIT_WITH_CUDA_KERNELS), for the dtypes of cuda_kernels.h.
// x, y: contiguous (B,N,D); gate: (B,D) with unit column stride, y's dtype.
#pragma once
#include "cuda_kernels.h"
#include "microdit/nn/gated_residual.h"

namespace microdit::nn::cuda_kernels {

// x + gate.unsqueeze(1) * y in the promoted dtype, rounded as the plain ops.
at::Tensor gated_residual_forward(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y);
// Same contract as gated_residual_backward_composite; grad contiguous.
GatedResidualGrads gated_residual_backward(const at::Tensor& grad, const at::Tensor& gate,
                                           const at::Tensor& y, at::ScalarType x_dtype);

}  // namespace microdit::nn::cuda_kernels
