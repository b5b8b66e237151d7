// Device code of the SwiGLU activation's CUDA kernels (host side: silu_mul_kernels.cu), kept
// apart so that scripts/device/emulate_kernels.cpp can run it on the CPU.
// The arithmetic and rounding are the plain ops': silu(a) = a / (1 + exp(-a)) rounded to T, times
// b; backward as MulBackward then ATen's silu_backward, each result rounded to T.
// Legend: V elements per access.
#pragma once
#include "kernel_access.cuh"

namespace microdit::nn::cuda_kernels::device {

__device__ __forceinline__ float silu(float a) { return a / (1.f + expf(-a)); }

// ATen's silu_backward: dy * s * (1 + a * (1 - s)), s = sigmoid(a).
__device__ __forceinline__ float silu_backward(float dy, float a) {
  const float s = 1.f / (1.f + expf(-a));
  return dy * s * (1.f + a * (1.f - s));
}

// out = silu(a) * b over packs of V elements, grid-strided; all contiguous.
template <typename T, int V>
__global__ void silu_mul_forward_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                        int64_t packs, T* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += step) {
    float av[V], bv[V];
    load<T, V>(a + p * V, av);
    load<T, V>(b + p * V, bv);
#pragma unroll
    for (int k = 0; k < V; ++k) av[k] = __fmul_rn(round_to<T>(silu(av[k])), bv[k]);
    store<T, V>(out + p * V, av);
  }
}

// da = silu_backward(round_T(g * b), a), db = g * round_T(silu(a)): the plain ops' backward with
// silu(a) recomputed, one pass; all contiguous.
template <typename T, int V>
__global__ void silu_mul_backward_kernel(const T* __restrict__ g, const T* __restrict__ a,
                                         const T* __restrict__ b, int64_t packs, T* __restrict__ da,
                                         T* __restrict__ db) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += step) {
    float gv[V], av[V], bv[V], dav[V], dbv[V];
    load<T, V>(g + p * V, gv);
    load<T, V>(a + p * V, av);
    load<T, V>(b + p * V, bv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      dav[k] = silu_backward(round_to<T>(__fmul_rn(gv[k], bv[k])), av[k]);
      dbv[k] = __fmul_rn(gv[k], round_to<T>(silu(av[k])));
    }
    store<T, V>(da + p * V, dav);
    store<T, V>(db + p * V, dbv);
  }
}

}  // namespace microdit::nn::cuda_kernels::device
