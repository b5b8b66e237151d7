// CUDA kernels of nn/fused_norm: LayerNorm + adaLN modulation, forward and backward.
// Forward and the row part of backward: one warp per row (token), statistics by warp shuffles,
// the row read from global memory once and re-read from L1. Backward's column sums (shift,
// scale, weight gradients) by a second kernel: a block per (32 columns, sample, chunk of rows),
// partial sums per chunk, added up by ATen. Legend: R rows, D width, B samples, N rows per sample.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <limits>

#include "fused_norm_kernels.h"

namespace microdit::nn::cuda_kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int64_t kMinRowsPerChunk = 64;  // column sums: rows of one sample per block
constexpr int64_t kMaxGridYZ = 65535;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

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
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half(v);
}

// x rounded to the output dtype first, as the composite path and Composer's LPLayerNorm.
template <typename Tin, typename Tout>
__device__ __forceinline__ float load_rounded(const Tin* p) {
  return to_float(from_float<Tout>(to_float(*p)));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// y = ((x - mean) * rstd * w) * scale1p[b] + shift[b]; w, shift, scale1p may be null.
// `rounded` (may be null): x rounded to Tout, kept for backward instead of x.
template <typename Tin, typename Tout>
__global__ void norm_forward_kernel(const Tin* __restrict__ x, int64_t row_stride, int64_t R, int D,
                                    const float* __restrict__ w, const float* __restrict__ shift,
                                    const float* __restrict__ scale1p, int64_t rows_per_sample,
                                    float eps, Tout* __restrict__ y, float* __restrict__ mean,
                                    float* __restrict__ rstd, Tout* __restrict__ rounded) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;  // the whole warp: threadIdx.y is the warp
  const int lane = threadIdx.x;
  const Tin* xr = x + row * row_stride;
  float sum = 0.f;
  for (int d = lane; d < D; d += kWarp) sum += load_rounded<Tin, Tout>(xr + d);
  const float mu = warp_sum(sum) / D;
  float squares = 0.f;  // two passes: no cancellation in the variance
  for (int d = lane; d < D; d += kWarp) {
    const float c = load_rounded<Tin, Tout>(xr + d) - mu;
    squares += c * c;
  }
  const float rs = rsqrtf(warp_sum(squares) / D + eps);
  const int64_t m = (row / rows_per_sample) * D;  // this sample's modulation row
  Tout* yr = y + row * D;
  Tout* rr = rounded ? rounded + row * D : nullptr;
  for (int d = lane; d < D; d += kWarp) {
    const float xd = load_rounded<Tin, Tout>(xr + d);
    if (rr) rr[d] = from_float<Tout>(xd);
    float v = (xd - mu) * rs;
    if (w) v *= w[d];
    if (scale1p) v = v * scale1p[m + d] + shift[m + d];
    yr[d] = from_float<Tout>(v);
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// g_x = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)), g_hat = g_y * scale1p[b] * w.
// x is what forward kept (Tin: x's dtype or the rounded copy's), g_x in Tgx (x's dtype).
template <typename Tin, typename Tout, typename Tgx>
__global__ void norm_backward_rows_kernel(const Tout* __restrict__ gy, const Tin* __restrict__ x,
                                          int64_t row_stride, int64_t R, int D,
                                          const float* __restrict__ w,
                                          const float* __restrict__ scale1p,
                                          int64_t rows_per_sample, const float* __restrict__ mean,
                                          const float* __restrict__ rstd, Tgx* __restrict__ gx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= R) return;
  const int lane = threadIdx.x;
  const float mu = mean[row], rs = rstd[row];
  const Tin* xr = x + row * row_stride;
  const Tout* gr = gy + row * D;
  const int64_t m = (row / rows_per_sample) * D;
  auto g_hat = [&](int d) {
    float g = to_float(gr[d]);
    if (scale1p) g *= scale1p[m + d];
    if (w) g *= w[d];
    return g;
  };
  float sum_g = 0.f, sum_gx = 0.f;
  for (int d = lane; d < D; d += kWarp) {
    const float g = g_hat(d);
    sum_g += g;
    sum_gx += g * (load_rounded<Tin, Tout>(xr + d) - mu) * rs;
  }
  const float mean_g = warp_sum(sum_g) / D, mean_gx = warp_sum(sum_gx) / D;
  Tgx* out = gx + row * D;
  for (int d = lane; d < D; d += kWarp) {
    const float x_hat = (load_rounded<Tin, Tout>(xr + d) - mu) * rs;
    out[d] = from_float<Tgx>(rs * (g_hat(d) - mean_g - x_hat * mean_gx));
  }
}

// Partial column sums over one chunk of one sample's rows, at [chunk][b][d]:
// shift: sum g_y; scale: sum g_y * x_hat * w; weight: sum g_y * scale1p[b] * x_hat.
template <typename Tin, typename Tout>
__global__ void norm_backward_columns_kernel(
    const Tout* __restrict__ gy, const Tin* __restrict__ x, int64_t row_stride, int D,
    int64_t rows_per_sample, int64_t rows_per_chunk, const float* __restrict__ w,
    const float* __restrict__ scale1p, const float* __restrict__ mean,
    const float* __restrict__ rstd, float* __restrict__ part_shift, float* __restrict__ part_scale,
    float* __restrict__ part_w) {
  const int d = blockIdx.x * kWarp + threadIdx.x;
  const int64_t b = blockIdx.y, chunk = blockIdx.z;
  const int64_t n0 = chunk * rows_per_chunk;
  const int64_t n1 = min(n0 + rows_per_chunk, rows_per_sample);
  float acc_shift = 0.f, acc_scale = 0.f, acc_w = 0.f;
  if (d < D) {
    const float wd = w ? w[d] : 1.f;
    const float s1p = scale1p ? scale1p[b * D + d] : 1.f;
    for (int64_t n = n0 + threadIdx.y; n < n1; n += kWarpsPerBlock) {
      const int64_t row = b * rows_per_sample + n;
      const float x_hat =
          (load_rounded<Tin, Tout>(x + row * row_stride + d) - mean[row]) * rstd[row];
      const float g = to_float(gy[row * D + d]);
      acc_shift += g;
      acc_scale += g * x_hat * wd;
      acc_w += g * s1p * x_hat;
    }
  }
  __shared__ float partial[3][kWarpsPerBlock][kWarp + 1];
  partial[0][threadIdx.y][threadIdx.x] = acc_shift;
  partial[1][threadIdx.y][threadIdx.x] = acc_scale;
  partial[2][threadIdx.y][threadIdx.x] = acc_w;
  __syncthreads();
  if (threadIdx.y != 0 || d >= D) return;
  float sums[3] = {0.f, 0.f, 0.f};
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < kWarpsPerBlock; ++i) sums[k] += partial[k][i][threadIdx.x];
  const int64_t slot = (chunk * gridDim.y + b) * D + d;
  if (part_shift) {
    part_shift[slot] = sums[0];
    part_scale[slot] = sums[1];
  }
  if (part_w) part_w[slot] = sums[2];
}

// Calls f with a value of the CUDA type of `type`.
template <typename F>
void with_cuda_type(at::ScalarType type, F&& f) {
  switch (type) {
    case at::kFloat:
      f(float{});
      break;
    case at::kBFloat16:
      f(__nv_bfloat16{});
      break;
    case at::kHalf:
      f(__half{});
      break;
    default:
      TORCH_CHECK(false, "fused_norm kernels: no kernel for dtype ", type);
  }
}

template <typename T>
const T* ptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<const T*>(t.data_ptr()) : nullptr;
}
template <typename T>
T* mutable_ptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr;
}

void check_inputs(const at::Tensor& rows, const at::Tensor& w, const at::Tensor& scale1p) {
  TORCH_CHECK(rows.dim() == 2 && rows.stride(1) == 1,
              "fused_norm kernels: rows (R,D) with unit "
              "column stride expected, got sizes ",
              rows.sizes(), " strides ", rows.strides());
  TORCH_CHECK(rows.size(1) <= std::numeric_limits<int>::max(),
              "fused_norm kernels: width too large");
  for (const auto* t : {&w, &scale1p})
    TORCH_CHECK(!t->defined() || (t->scalar_type() == at::kFloat && t->is_contiguous()),
                "fused_norm kernels: weight and modulation must be contiguous float32");
  TORCH_CHECK(!scale1p.defined() || scale1p.size(0) <= kMaxGridYZ, "fused_norm kernels: at most ",
              kMaxGridYZ, " samples");
}

dim3 row_grid(int64_t R) {
  return dim3(static_cast<unsigned>((R + kWarpsPerBlock - 1) / kWarpsPerBlock));
}

}  // namespace

FusedNormForward fused_norm_forward(const at::Tensor& rows, const at::Tensor& w,
                                    const at::Tensor& shift, const at::Tensor& scale1p, double eps,
                                    at::ScalarType out_dtype) {
  check_inputs(rows, w, scale1p);
  const c10::cuda::CUDAGuard guard(rows.device());
  const int64_t R = rows.size(0), D = rows.size(1);
  FusedNormForward out{at::empty({R, D}, rows.options().dtype(out_dtype)),
                       at::empty({R}, rows.options().dtype(at::kFloat)),
                       at::empty({R}, rows.options().dtype(at::kFloat)), at::Tensor()};
  if (fused_norm_keeps_rounded(rows.scalar_type(), out_dtype))
    out.rounded = at::empty({R, D}, rows.options().dtype(out_dtype));
  if (R == 0) return out;
  const int64_t rows_per_sample = scale1p.defined() ? R / scale1p.size(0) : R;
  auto shift_c = shift.defined() ? shift.contiguous() : shift;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_cuda_type(rows.scalar_type(), [&](auto in) {
    with_cuda_type(out_dtype, [&](auto o) {
      using Tin = decltype(in);
      using Tout = decltype(o);
      norm_forward_kernel<Tin, Tout><<<row_grid(R), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
          ptr<Tin>(rows), rows.stride(0), R, static_cast<int>(D), ptr<float>(w),
          ptr<float>(shift_c), ptr<float>(scale1p), rows_per_sample, static_cast<float>(eps),
          mutable_ptr<Tout>(out.y), mutable_ptr<float>(out.mean), mutable_ptr<float>(out.rstd),
          mutable_ptr<Tout>(out.rounded));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

FusedNormGrads fused_norm_backward(const at::Tensor& grad_y, const at::Tensor& rows,
                                   const at::Tensor& w, const at::Tensor& scale1p,
                                   const at::Tensor& mean, const at::Tensor& rstd,
                                   bool has_modulation, at::ScalarType grad_x_dtype) {
  check_inputs(rows, w, scale1p);
  TORCH_CHECK(grad_y.is_contiguous() && grad_y.sizes() == rows.sizes(),
              "fused_norm kernels: gradient of shape ", grad_y.sizes(), " for rows ", rows.sizes());
  const c10::cuda::CUDAGuard guard(rows.device());
  const int64_t R = rows.size(0), D = rows.size(1);
  const int64_t B = has_modulation ? scale1p.size(0) : 1;
  const int64_t N = R / B;
  const int64_t rows_per_chunk = std::max(kMinRowsPerChunk, (N + kMaxGridYZ - 1) / kMaxGridYZ);
  const int64_t chunks = std::max<int64_t>(1, (N + rows_per_chunk - 1) / rows_per_chunk);
  auto f32 = rows.options().dtype(at::kFloat);
  FusedNormGrads out;
  out.x = at::empty({R, D}, rows.options().dtype(grad_x_dtype));
  at::Tensor part_shift, part_scale, part_w;
  if (has_modulation) {
    part_shift = at::empty({chunks, B, D}, f32);
    part_scale = at::empty({chunks, B, D}, f32);
  }
  if (w.defined()) part_w = at::empty({chunks, B, D}, f32);
  if (R == 0) {
    for (auto* t : {&part_shift, &part_scale, &part_w})
      if (t->defined()) t->zero_();
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_cuda_type(rows.scalar_type(), [&](auto in) {
    with_cuda_type(grad_y.scalar_type(), [&](auto o) {
      using Tin = decltype(in);
      using Tout = decltype(o);
      if (R == 0) return;
      with_cuda_type(grad_x_dtype, [&](auto gx) {
        using Tgx = decltype(gx);
        norm_backward_rows_kernel<Tin, Tout, Tgx>
            <<<row_grid(R), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
                ptr<Tout>(grad_y), ptr<Tin>(rows), rows.stride(0), R, static_cast<int>(D),
                ptr<float>(w), ptr<float>(scale1p), N, ptr<float>(mean), ptr<float>(rstd),
                mutable_ptr<Tgx>(out.x));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
      if (!has_modulation && !w.defined()) return;
      const dim3 grid(static_cast<unsigned>((D + kWarp - 1) / kWarp), static_cast<unsigned>(B),
                      static_cast<unsigned>(chunks));
      norm_backward_columns_kernel<Tin, Tout><<<grid, dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
          ptr<Tout>(grad_y), ptr<Tin>(rows), rows.stride(0), static_cast<int>(D), N, rows_per_chunk,
          ptr<float>(w), ptr<float>(scale1p), ptr<float>(mean), ptr<float>(rstd),
          mutable_ptr<float>(part_shift), mutable_ptr<float>(part_scale),
          mutable_ptr<float>(part_w));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  if (has_modulation) {
    out.shift = part_shift.sum(0);
    out.scale = part_scale.sum(0);
  }
  if (w.defined()) out.weight = part_w.sum(at::IntArrayRef{0, 1});
  return out;
}

}  // namespace microdit::nn::cuda_kernels
