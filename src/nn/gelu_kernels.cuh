// Device code of the MoE experts' GELU backward with the activation recomputed (host side:
// gelu_kernels.cu), kept apart so that scripts/device/emulate_kernels.cpp can run it on the CPU.
// The arithmetic is ATen's exact-erf GELU and its backward (GeluCUDAKernelImpl.cu) in float,
// each result rounded to T once.
// Legend: V elements per access.
#pragma once
#include "kernel_access.cuh"

namespace microdit::nn::cuda_kernels::device {

constexpr float kSqrtHalf = 0.70710678118654752440f;
// 1 / sqrt(2 pi): ATen's M_2_SQRTPI * M_SQRT1_2 * 0.5.
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

__device__ __forceinline__ float gelu(float x) { return x * 0.5f * (1.f + erff(x * kSqrtHalf)); }

// dy * (cdf(x) + x * pdf(x)).
__device__ __forceinline__ float gelu_backward(float dy, float x) {
  const float cdf = 0.5f * (1.f + erff(x * kSqrtHalf));
  const float pdf = expf(-0.5f * x * x) * kInvSqrt2Pi;
  return dy * (cdf + x * pdf);
}

// h = gelu(u) for the next product's weight gradient, and u's gradient from h's gradient dy,
// in one pass (ATen recomputing gelu(u) and then gelu_backward takes two, reading u twice).
// du may be dy: each element is read before it is written, by the same thread.
template <typename T, int V>
__global__ void gelu_recompute_backward_kernel(const T* dy, const T* __restrict__ u, int64_t packs,
                                               T* __restrict__ h, T* du) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += step) {
    float gv[V], uv[V], hv[V];
    load<T, V>(dy + p * V, gv);
    load<T, V>(u + p * V, uv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      hv[k] = gelu(uv[k]);
      gv[k] = gelu_backward(gv[k], uv[k]);
    }
    store<T, V>(h + p * V, hv);
    store<T, V>(du + p * V, gv);
  }
}

}  // namespace microdit::nn::cuda_kernels::device
