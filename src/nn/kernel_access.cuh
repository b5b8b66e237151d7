// Device helpers the fused kernels share (fused_norm_kernels.cuh, gated_residual_kernels.cuh):
// float conversions of the storage types, V-element vector accesses, warp sums, and the launch
// shapes of the per-sample column sums. Device code only, so that
// scripts/device/emulate_kernels.cpp can run it on the CPU.
// Legend: R rows, D width, N rows per sample, V elements per access.
#pragma once
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

namespace microdit::nn::cuda_kernels::device {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kVector = 4;
constexpr int64_t kMinRowsPerChunk = 64;  // column sums: rows of one sample per block
constexpr int64_t kMaxGridYZ = 65535;

// Launch shapes (host), shared with the emulator: row kernels in blocks of kWarpsPerBlock rows,
// a warp per row; column sums in blocks of kWarp * V columns over chunks of at least
// kMinRowsPerChunk rows of one sample.
inline int64_t row_blocks(int64_t R) { return (R + kWarpsPerBlock - 1) / kWarpsPerBlock; }
// Elementwise kernels: kElementwiseThreads threads per block, a pack of V elements per thread,
// grid-strided beyond kMaxElementwiseBlocks blocks.
constexpr int kElementwiseThreads = 256;
constexpr int64_t kMaxElementwiseBlocks = int64_t{1} << 20;
inline int64_t elementwise_blocks(int64_t packs) {
  return std::min((packs + kElementwiseThreads - 1) / kElementwiseThreads, kMaxElementwiseBlocks);
}
inline int64_t column_blocks(int64_t D, int V) { return (D + kWarp * V - 1) / (kWarp * V); }
inline int64_t rows_per_chunk(int64_t N) {
  return std::max(kMinRowsPerChunk, (N + kMaxGridYZ - 1) / kMaxGridYZ);
}
inline int64_t chunk_count(int64_t N) {
  return std::max<int64_t>(1, (N + rows_per_chunk(N) - 1) / rows_per_chunk(N));
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

// v rounded to T's precision (and back): what storing in T and reading again gives.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// V elements moved as one access.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ void load(const T* p, float (&out)[V]) {
  const auto pack = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = to_float(pack.v[i]);
}

template <typename T, int V>
__device__ __forceinline__ void store(T* p, const float (&in)[V]) {
  Pack<T, V> pack;
#pragma unroll
  for (int i = 0; i < V; ++i) pack.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack<T, V>*>(p) = pack;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Adds the kWarpsPerBlock partial sums of each of a block's kWarp * V columns (acc: this
// thread's V columns) through shared memory; row threadIdx.y == 0 gets the column totals in out.
template <int K, int V>
__device__ __forceinline__ void block_column_sums(const float (&acc)[K][V], float (&out)[K][V]) {
  __shared__ float partial[K][kWarpsPerBlock][kWarp * V];
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int i = 0; i < V; ++i) partial[k][threadIdx.y][threadIdx.x * V + i] = acc[k][i];
  __syncthreads();
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int i = 0; i < V; ++i) {
      out[k][i] = 0.f;
      for (int j = 0; j < kWarpsPerBlock; ++j) out[k][i] += partial[k][j][threadIdx.x * V + i];
    }
}

}  // namespace microdit::nn::cuda_kernels::device
