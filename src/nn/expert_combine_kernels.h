// The CUDA kernels of nn/expert_combine (expert_combine_kernels.cu), built only where nvcc and a
// CUDA LibTorch are found (MICRODIT_WITH_CUDA_KERNELS), for the dtypes of cuda_kernels.h.
// h: contiguous (E,B*K,D); probs: contiguous float32 (B,E,K).
#pragma once
#include "cuda_kernels.h"
#include "microdit/nn/expert_combine.h"

namespace microdit::nn::cuda_kernels {

// expert_combine_forward_composite, with the choices of each token read from `slots`
// (expert_choice_slots: contiguous (B,T,E) int32).
at::Tensor expert_combine_forward(const at::Tensor& h, const at::Tensor& probs,
                                  const at::Tensor& slots);
// Same contract as expert_combine_backward_composite; grad contiguous (B,T,D) in h's dtype,
// indices contiguous (B,E,K) int64.
ExpertCombineGrads expert_combine_backward(const at::Tensor& grad, const at::Tensor& h,
                                           const at::Tensor& probs, const at::Tensor& indices);

}  // namespace microdit::nn::cuda_kernels
