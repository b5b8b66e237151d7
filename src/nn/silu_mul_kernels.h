// The CUDA kernels of nn/activation_recompute's silu_mul (silu_mul_kernels.cu), built only where
// nvcc and a CUDA LibTorch are found (MICRODIT_WITH_CUDA_KERNELS), for the dtypes of
// cuda_kernels.h. a, b (and the gradient): one shape and dtype.
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "cuda_kernels.h"

namespace microdit::nn::cuda_kernels {

// silu(a) * b, contiguous. a and b are read in place where both are rows of one row stride (the
// halves of a wider tensor), else copied contiguous first.
at::Tensor silu_mul_forward(const at::Tensor& a, const at::Tensor& b);
// The gradients of a and b for the output's gradient g, silu(a) recomputed.
std::pair<at::Tensor, at::Tensor> silu_mul_backward(const at::Tensor& g, const at::Tensor& a,
                                                    const at::Tensor& b);
// The same, written into da and db: a's shape and dtype, and the row stride a and b are read
// with (the halves of the merged projection's gradient).
void silu_mul_backward_into(const at::Tensor& g, const at::Tensor& a, const at::Tensor& b,
                            const at::Tensor& da, const at::Tensor& db);

}  // namespace microdit::nn::cuda_kernels
