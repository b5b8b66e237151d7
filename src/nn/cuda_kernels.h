// The dtypes the fused CUDA kernels (src/nn/*_kernels.cu) are built for, for their callers.
#pragma once
#include <c10/core/ScalarType.h>

namespace microdit::nn::cuda_kernels {

inline bool supports(at::ScalarType type) { return type == at::kFloat || type == at::kBFloat16; }

}  // namespace microdit::nn::cuda_kernels
