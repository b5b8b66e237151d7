// The CUDA kernels of nn/fused_norm (fused_norm_kernels.cu), built only where nvcc and a CUDA
// LibTorch are found (MICRODIT_WITH_CUDA_KERNELS). Same contracts as the composite functions in
// microdit/nn/fused_norm.h, for the dtypes of cuda_kernels.h.
#pragma once
#include "cuda_kernels.h"
#include "microdit/nn/fused_norm.h"

namespace microdit::nn::cuda_kernels {

FusedNormForward fused_norm_forward(const at::Tensor& rows, const at::Tensor& w,
                                    const at::Tensor& shift, const at::Tensor& scale1p, double eps,
                                    at::ScalarType out_dtype);
FusedNormGrads fused_norm_backward(const at::Tensor& grad_y, const at::Tensor& rows,
                                   const at::Tensor& w, const at::Tensor& scale1p,
                                   const at::Tensor& mean, const at::Tensor& rstd,
                                   bool has_modulation, at::ScalarType grad_x_dtype,
                                   const at::Tensor& residual_grad, const at::Tensor& grad_x_out);

}  // namespace microdit::nn::cuda_kernels
