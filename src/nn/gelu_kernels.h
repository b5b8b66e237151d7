// The CUDA kernel of nn/activation_recompute's gelu_bmm backward (gelu_kernels.cu), built only
// where nvcc and a CUDA LibTorch are found (MICRODIT_WITH_CUDA_KERNELS), for the dtypes of
// cuda_kernels.h.
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "cuda_kernels.h"

namespace microdit::nn::cuda_kernels {

// {gelu(u), u's gradient} for gelu(u)'s gradient grad_h (contiguous, u's shape and dtype), which
// the gradient overwrites: the caller hands over a tensor nothing else holds.
std::pair<at::Tensor, at::Tensor> gelu_recompute_backward(at::Tensor grad_h, const at::Tensor& u);

}  // namespace microdit::nn::cuda_kernels
