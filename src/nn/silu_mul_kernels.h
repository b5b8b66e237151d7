// The CUDA kernels of nn/activation_recompute's silu_mul (silu_mul_kernels.cu), built only where
// nvcc and a CUDA LibTorch are found (MICRODIT_WITH_CUDA_KERNELS), for the dtypes of
// cuda_kernels.h. a, b (and the gradient): one shape and dtype.
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "cuda_kernels.h"

namespace microdit::nn::cuda_kernels {

// silu(a) * b, contiguous.
at::Tensor silu_mul_forward(const at::Tensor& a, const at::Tensor& b);
// The gradients of a and b for the output's gradient g, silu(a) recomputed; contiguous.
std::pair<at::Tensor, at::Tensor> silu_mul_backward(const at::Tensor& g, const at::Tensor& a,
                                                    const at::Tensor& b);

}  // namespace microdit::nn::cuda_kernels
