// Whether this build has the fused CUDA kernels (src/nn/*_kernels.cu: nn/fused_norm,
// nn/gated_residual). They are built where CMake finds nvcc and a CUDA LibTorch; without them
// the fused operations run as ATen ops (the composite paths) on every device.
#pragma once

namespace microdit::nn {

bool fused_kernels_built();

}  // namespace microdit::nn
