// Device code of nn/gated_residual's CUDA kernels (host side: gated_residual_kernels.cu), kept
// apart so that scripts/device/emulate_kernels.cpp can run it on the CPU.
// Rounding follows the plain ops: the product gate * y in the dtype Tp of gate and y, the sum in
// the promoted dtype To; __fmul_rn / __fadd_rn are never contracted into one fma, so in float32
// the fused results equal the plain kernels' bit for bit.
// Legend: B samples, N tokens per sample, D channels, V elements per access.
#pragma once
#include "kernel_access.cuh"

namespace microdit::nn::cuda_kernels::device {

// out = x + gate[b] * y, a warp per row of D channels (launch: row_blocks(B * N) blocks of
// kWarp x kWarpsPerBlock threads); gate rows gate_stride apart.
template <typename Tx, typename Tp, typename To, int V>
__global__ void gated_residual_forward_kernel(const Tx* __restrict__ x, const Tp* __restrict__ gate,
                                              int64_t gate_stride, const Tp* __restrict__ y,
                                              int64_t R, int64_t N, int D, To* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;
  const Tp* gate_row = gate + (row / N) * gate_stride;
  for (int d = threadIdx.x * V; d < D; d += kWarp * V) {
    const int64_t i = row * D + d;
    float xv[V], gv[V], yv[V];
    load<Tx, V>(x + i, xv);
    load<Tp, V>(gate_row + d, gv);
    load<Tp, V>(y + i, yv);
#pragma unroll
    for (int k = 0; k < V; ++k) xv[k] = __fadd_rn(xv[k], round_to<Tp>(__fmul_rn(gv[k], yv[k])));
    store<To, V>(out + i, xv);
  }
}

// Backward over one chunk of one sample's rows, kWarp * V columns per block. With gp the
// gradient rounded to Tp (the add's backward casts it to the product's dtype):
// dy = gp * gate[b]; dx = grad rounded to Tx where dx is not null (x's dtype differs from the
// output's); part_gate[chunk][b][d] = sum over the chunk's rows of round_Tp(gp * y).
template <typename To, typename Tp, typename Tx, int V>
__global__ void gated_residual_backward_kernel(const To* __restrict__ grad,
                                               const Tp* __restrict__ gate, int64_t gate_stride,
                                               const Tp* __restrict__ y, int D, int64_t N,
                                               int64_t rows_per_chunk, Tp* __restrict__ dy,
                                               Tx* __restrict__ dx, float* __restrict__ part_gate) {
  const int d = (blockIdx.x * kWarp + threadIdx.x) * V;
  const int64_t b = blockIdx.y, chunk = blockIdx.z;
  const int64_t n0 = chunk * rows_per_chunk;
  const int64_t n1 = min(n0 + rows_per_chunk, N);
  float acc[1][V] = {};
  if (d < D) {
    float gv[V];
    load<Tp, V>(gate + b * gate_stride + d, gv);
    for (int64_t n = n0 + threadIdx.y; n < n1; n += kWarpsPerBlock) {
      const int64_t i = (b * N + n) * D + d;
      float g[V], yv[V];
      load<To, V>(grad + i, g);
      if (dx) store<Tx, V>(dx + i, g);
      load<Tp, V>(y + i, yv);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float gp = round_to<Tp>(g[k]);
        acc[0][k] += round_to<Tp>(__fmul_rn(gp, yv[k]));
        g[k] = __fmul_rn(gp, gv[k]);
      }
      store<Tp, V>(dy + i, g);
    }
  }
  float sums[1][V];
  block_column_sums<1, V>(acc, sums);
  if (threadIdx.y != 0 || d >= D) return;
  const int64_t slot = (chunk * gridDim.y + b) * D + d;
#pragma unroll
  for (int k = 0; k < V; ++k) part_gate[slot + k] = sums[0][k];
}

}  // namespace microdit::nn::cuda_kernels::device
