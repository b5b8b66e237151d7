// Device code of nn/fused_norm's CUDA kernels (host side: fused_norm_kernels.cu). Only device
// functions and kernels, so that scripts/device/emulate_kernels.cpp can also run them on the CPU
// (one thread per CUDA thread) against the composite implementation where no GPU is at hand.
// Legend: R rows, D width, B samples, N rows per sample, V elements per access.
#pragma once
#include "kernel_access.cuh"

namespace microdit::nn::cuda_kernels::device {

// x rounded to the output dtype first, as the composite path and Composer's LPLayerNorm.
template <typename Tin, typename Tout, int V>
__device__ __forceinline__ void load_rounded(const Tin* p, float (&out)[V]) {
  load<Tin, V>(p, out);
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = round_to<Tout>(out[i]);
}

// p[0..V) or ones where p is null.
template <int V>
__device__ __forceinline__ void load_or_ones(const float* p, float (&out)[V]) {
  if (p) {
    load<float, V>(p, out);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = 1.f;
  }
}

// y = ((x - mean) * rstd * w) * scale1p[b] + shift[b]; w, shift, scale1p may be null.
// `rounded` (may be null): x rounded to Tout, kept for backward instead of x.
template <typename Tin, typename Tout, int V>
__global__ void norm_forward_kernel(const Tin* __restrict__ x, int64_t row_stride, int64_t R, int D,
                                    const float* __restrict__ w, const float* __restrict__ shift,
                                    const float* __restrict__ scale1p, int64_t rows_per_sample,
                                    float eps, Tout* __restrict__ y, float* __restrict__ mean,
                                    float* __restrict__ rstd, Tout* __restrict__ rounded) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;  // the whole warp: threadIdx.y is the warp
  const int first = threadIdx.x * V;
  const Tin* xr = x + row * row_stride;
  float v[V];
  float sum = 0.f;
  for (int d = first; d < D; d += kWarp * V) {
    load_rounded<Tin, Tout, V>(xr + d, v);
#pragma unroll
    for (int i = 0; i < V; ++i) sum += v[i];
  }
  const float mu = warp_sum(sum) / D;
  float squares = 0.f;  // two passes: no cancellation in the variance
  for (int d = first; d < D; d += kWarp * V) {
    load_rounded<Tin, Tout, V>(xr + d, v);
#pragma unroll
    for (int i = 0; i < V; ++i) squares += (v[i] - mu) * (v[i] - mu);
  }
  const float rs = rsqrtf(warp_sum(squares) / D + eps);
  const int64_t m = (row / rows_per_sample) * D;  // this sample's modulation row
  for (int d = first; d < D; d += kWarp * V) {
    load_rounded<Tin, Tout, V>(xr + d, v);
    if (rounded) store<Tout, V>(rounded + row * D + d, v);
    float wv[V], sv[V], tv[V];
    load_or_ones<V>(w ? w + d : nullptr, wv);
    if (scale1p) {
      load<float, V>(scale1p + m + d, sv);
      load<float, V>(shift + m + d, tv);
    }
#pragma unroll
    for (int i = 0; i < V; ++i) {
      v[i] = (v[i] - mu) * rs * wv[i];
      if (scale1p) v[i] = v[i] * sv[i] + tv[i];
    }
    store<Tout, V>(y + row * D + d, v);
  }
  if (threadIdx.x == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// g_x = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)), g_hat = g_y * scale1p[b] * w,
// plus the residual stream's gradient g_res (R,D) where given (may be null), rounded once.
// x is what forward kept (Tin: x's dtype or the rounded copy's), g_x and g_res in Tgx (x's dtype).
// g_x's rows are gx_stride apart (D, or wider when they are a slice of a projection's gradient).
template <typename Tin, typename Tout, typename Tgx, int V>
__global__ void norm_backward_rows_kernel(
    const Tout* __restrict__ gy, const Tin* __restrict__ x, int64_t row_stride, int64_t R, int D,
    const float* __restrict__ w, const float* __restrict__ scale1p, int64_t rows_per_sample,
    const float* __restrict__ mean, const float* __restrict__ rstd, const Tgx* __restrict__ gres,
    Tgx* __restrict__ gx, int64_t gx_stride) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;
  const int first = threadIdx.x * V;
  const float mu = mean[row], rs = rstd[row];
  const Tin* xr = x + row * row_stride;
  const Tout* gr = gy + row * D;
  const int64_t m = (row / rows_per_sample) * D;
  // g_hat and x_hat of the V columns from d.
  auto columns = [&](int d, float(&g)[V], float(&x_hat)[V]) {
    float wv[V], sv[V];
    load<Tout, V>(gr + d, g);
    load_or_ones<V>(w ? w + d : nullptr, wv);
    load_or_ones<V>(scale1p ? scale1p + m + d : nullptr, sv);
    load_rounded<Tin, Tout, V>(xr + d, x_hat);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      g[i] *= sv[i] * wv[i];
      x_hat[i] = (x_hat[i] - mu) * rs;
    }
  };
  float g[V], x_hat[V];
  float sum_g = 0.f, sum_gx = 0.f;
  for (int d = first; d < D; d += kWarp * V) {
    columns(d, g, x_hat);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      sum_g += g[i];
      sum_gx += g[i] * x_hat[i];
    }
  }
  const float mean_g = warp_sum(sum_g) / D, mean_gx = warp_sum(sum_gx) / D;
  for (int d = first; d < D; d += kWarp * V) {
    columns(d, g, x_hat);
#pragma unroll
    for (int i = 0; i < V; ++i) g[i] = rs * (g[i] - mean_g - x_hat[i] * mean_gx);
    if (gres) {
      float r[V];
      load<Tgx, V>(gres + row * D + d, r);
#pragma unroll
      for (int i = 0; i < V; ++i) g[i] += r[i];
    }
    store<Tgx, V>(gx + row * gx_stride + d, g);
  }
}

// Partial column sums over one chunk of one sample's rows, at [chunk][b][d]:
// shift: sum g_y; scale: sum g_y * x_hat * w; weight: sum g_y * scale1p[b] * x_hat.
// A thread sums V columns over every kWarpsPerBlock-th row of the chunk.
template <typename Tin, typename Tout, int V>
__global__ void norm_backward_columns_kernel(
    const Tout* __restrict__ gy, const Tin* __restrict__ x, int64_t row_stride, int D,
    int64_t rows_per_sample, int64_t rows_per_chunk, const float* __restrict__ w,
    const float* __restrict__ scale1p, const float* __restrict__ mean,
    const float* __restrict__ rstd, float* __restrict__ part_shift, float* __restrict__ part_scale,
    float* __restrict__ part_w) {
  const int d = (blockIdx.x * kWarp + threadIdx.x) * V;
  const int64_t b = blockIdx.y, chunk = blockIdx.z;
  const int64_t n0 = chunk * rows_per_chunk;
  const int64_t n1 = min(n0 + rows_per_chunk, rows_per_sample);
  float acc[3][V] = {};  // shift, scale, weight
  if (d < D) {
    float wv[V], sv[V], g[V], x_hat[V];
    load_or_ones<V>(w ? w + d : nullptr, wv);
    load_or_ones<V>(scale1p ? scale1p + b * D + d : nullptr, sv);
    for (int64_t n = n0 + threadIdx.y; n < n1; n += kWarpsPerBlock) {
      const int64_t row = b * rows_per_sample + n;
      load<Tout, V>(gy + row * D + d, g);
      load_rounded<Tin, Tout, V>(x + row * row_stride + d, x_hat);
      const float mu = mean[row], rs = rstd[row];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float xh = (x_hat[i] - mu) * rs;
        acc[0][i] += g[i];
        acc[1][i] += g[i] * xh * wv[i];
        acc[2][i] += g[i] * sv[i] * xh;
      }
    }
  }
  float sums[3][V];
  block_column_sums<3, V>(acc, sums);
  if (threadIdx.y != 0 || d >= D) return;
  const int64_t slot = (chunk * gridDim.y + b) * D + d;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    if (part_shift) {
      part_shift[slot + i] = sums[0][i];
      part_scale[slot + i] = sums[1][i];
    }
    if (part_w) part_w[slot + i] = sums[2][i];
  }
}

}  // namespace microdit::nn::cuda_kernels::device
