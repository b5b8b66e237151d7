// Device code of nn/expert_combine's CUDA kernels (host side: expert_combine_kernels.cu), kept
// apart so that scripts/device/emulate_kernels.cpp can run it on the CPU.
// Rounding follows the plain ops: the probability and each product rounded to h's dtype Th;
// a token's products summed in float32 in expert order (the plain scatter_add rounds after
// each add in Th), rounded once. Backward: the output row's gradient round(g * p), the
// probability's the row sum of round(g * h) rounded to Th.
// Legend: B samples, T tokens per sample, D width, E experts, K tokens per expert, V elements
// per access.
#pragma once
#include "kernel_access.cuh"

namespace microdit::nn::cuda_kernels::device {

// out[b,t] for the R = B * T token rows, a warp per row (launch: row_blocks(R) blocks of
// kWarp x kWarpsPerBlock threads); slots (B,T,E): the k of each expert's choice of the token, or
// -1; probs (B,E,K); h rows (E,B,K).
template <typename Th, int V>
__global__ void expert_combine_forward_kernel(const Th* __restrict__ h,
                                              const float* __restrict__ probs,
                                              const int* __restrict__ slots, int64_t R, int64_t T,
                                              int E, int64_t B, int64_t K, int D,
                                              Th* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;
  const int64_t b = row / T;
  const int* slot = slots + row * E;
  for (int d = threadIdx.x * V; d < D; d += kWarp * V) {
    float acc[V] = {};
    for (int e = 0; e < E; ++e) {
      const int k = slot[e];
      if (k < 0) continue;
      const float p = round_to<Th>(probs[(b * E + e) * K + k]);
      float hv[V];
      load<Th, V>(h + ((e * B + b) * K + k) * D + d, hv);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] = __fadd_rn(acc[i], round_to<Th>(__fmul_rn(p, hv[i])));
    }
    store<Th, V>(out + row * D + d, acc);
  }
}

// For the R = E * B * K choice rows of h, a warp per row: dh = round(g * p) with g the gradient
// row of the chosen token; dp (B,E,K) = round_Th(sum over the row of round_Th(g * h)).
template <typename Th, int V>
__global__ void expert_combine_backward_kernel(const Th* __restrict__ grad,
                                               const Th* __restrict__ h,
                                               const float* __restrict__ probs,
                                               const int64_t* __restrict__ indices, int64_t R,
                                               int64_t T, int E, int64_t B, int64_t K, int D,
                                               Th* __restrict__ dh, float* __restrict__ dp) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;  // the whole warp: one row per warp
  const int64_t e = row / (B * K), b = row % (B * K) / K, k = row % K;
  const int64_t choice = (b * E + e) * K + k;
  const float p = round_to<Th>(probs[choice]);
  const Th* g_row = grad + (b * T + indices[choice]) * D;
  float acc = 0.f;
  for (int d = threadIdx.x * V; d < D; d += kWarp * V) {
    float gv[V], hv[V];
    load<Th, V>(g_row + d, gv);
    load<Th, V>(h + row * D + d, hv);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      acc += round_to<Th>(__fmul_rn(gv[i], hv[i]));
      gv[i] = __fmul_rn(gv[i], p);
    }
    store<Th, V>(dh + row * D + d, gv);
  }
  acc = warp_sum(acc);
  if (threadIdx.x == 0) dp[choice] = round_to<Th>(acc);
}

}  // namespace microdit::nn::cuda_kernels::device
