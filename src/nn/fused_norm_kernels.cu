// CUDA kernels of nn/fused_norm: LayerNorm + adaLN modulation, forward and backward.
// Forward and the row part of backward: one warp per row (token), statistics by warp shuffles,
// the row read from global memory once and re-read from L1. Backward's column sums (shift,
// scale, weight gradients) by a second kernel: a block per (columns, sample, chunk of rows),
// partial sums per chunk, added up by ATen. Each lane moves V consecutive elements per access
// (V = 4 where the width, the row stride and every pointer allow it, else 1).
// Legend: R rows, D width, B samples, N rows per sample.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>
#include <numeric>

#include "fused_norm_kernels.cuh"
#include "fused_norm_kernels.h"
#include "kernel_launch.cuh"

namespace microdit::nn::cuda_kernels {
namespace {

using namespace device;

void check_inputs(const at::Tensor& rows, const at::Tensor& w, const at::Tensor& scale1p) {
  TORCH_CHECK(rows.dim() == 2 && rows.stride(1) == 1,
              "fused_norm kernels: rows (R,D) with unit column stride expected, got sizes ",
              rows.sizes(), " strides ", rows.strides());
  TORCH_CHECK(rows.size(1) <= std::numeric_limits<int>::max() / kVector,
              "fused_norm kernels: width too large");
  for (const auto* t : {&w, &scale1p})
    TORCH_CHECK(!t->defined() || (t->scalar_type() == at::kFloat && t->is_contiguous()),
                "fused_norm kernels: weight and modulation must be contiguous float32");
  TORCH_CHECK(!scale1p.defined() || scale1p.size(0) <= kMaxGridYZ, "fused_norm kernels: at most ",
              kMaxGridYZ, " samples");
}

dim3 row_grid(int64_t R) { return dim3(static_cast<unsigned>(row_blocks(R))); }

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
      with_vector_width(D, rows.stride(0), {&rows, &w, &shift_c, &scale1p, &out.y, &out.rounded},
                        [&](auto vector) {
                          using Tin = decltype(in);
                          using Tout = decltype(o);
                          constexpr int V = decltype(vector)::value;
                          norm_forward_kernel<Tin, Tout, V>
                              <<<row_grid(R), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
                                  ptr<Tin>(rows), rows.stride(0), R, static_cast<int>(D),
                                  ptr<float>(w), ptr<float>(shift_c), ptr<float>(scale1p),
                                  rows_per_sample, static_cast<float>(eps),
                                  mutable_ptr<Tout>(out.y), mutable_ptr<float>(out.mean),
                                  mutable_ptr<float>(out.rstd), mutable_ptr<Tout>(out.rounded));
                          C10_CUDA_KERNEL_LAUNCH_CHECK();
                        });
    });
  });
  return out;
}

FusedNormGrads fused_norm_backward(const at::Tensor& grad_y, const at::Tensor& rows,
                                   const at::Tensor& w, const at::Tensor& scale1p,
                                   const at::Tensor& mean, const at::Tensor& rstd,
                                   bool has_modulation, at::ScalarType grad_x_dtype,
                                   const at::Tensor& residual_grad, const at::Tensor& grad_x_out) {
  check_inputs(rows, w, scale1p);
  TORCH_CHECK(grad_y.is_contiguous() && grad_y.sizes() == rows.sizes(),
              "fused_norm kernels: gradient of shape ", grad_y.sizes(), " for rows ", rows.sizes());
  TORCH_CHECK(!residual_grad.defined() ||
                  (residual_grad.is_contiguous() && residual_grad.sizes() == rows.sizes() &&
                   residual_grad.scalar_type() == grad_x_dtype),
              "fused_norm kernels: residual gradient of shape ", residual_grad.sizes(),
              " for rows ", rows.sizes(), ", contiguous in the x gradient's dtype expected");
  TORCH_CHECK(
      !grad_x_out.defined() || (grad_x_out.sizes() == rows.sizes() && grad_x_out.stride(1) == 1 &&
                                grad_x_out.scalar_type() == grad_x_dtype),
      "fused_norm kernels: x gradient rows of shape ", grad_x_out.sizes(), " for rows ",
      rows.sizes(), ", unit column stride in the x gradient's dtype expected");
  const c10::cuda::CUDAGuard guard(rows.device());
  const int64_t R = rows.size(0), D = rows.size(1);
  const int64_t B = has_modulation ? scale1p.size(0) : 1;
  const int64_t N = R / B;
  const int64_t chunks = chunk_count(N);
  auto f32 = rows.options().dtype(at::kFloat);
  FusedNormGrads out;
  out.x = grad_x_out.defined() ? grad_x_out : at::empty({R, D}, rows.options().dtype(grad_x_dtype));
  // Four elements per access need every row start aligned: both row strides multiples of four
  // (their gcd is, exactly when both are).
  const int64_t row_strides = std::gcd(rows.stride(0), out.x.stride(0));
  at::Tensor part_shift, part_scale, part_w;
  if (has_modulation) {
    part_shift = at::zeros({chunks, B, D}, f32);
    part_scale = at::zeros({chunks, B, D}, f32);
  }
  if (w.defined()) part_w = at::zeros({chunks, B, D}, f32);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (R > 0) {
    with_cuda_type(rows.scalar_type(), [&](auto in) {
      with_cuda_type(grad_y.scalar_type(), [&](auto o) {
        with_vector_width(
            D, row_strides, {&rows, &grad_y, &w, &scale1p, &residual_grad, &out.x},
            [&](auto vector) {
              using Tin = decltype(in);
              using Tout = decltype(o);
              constexpr int V = decltype(vector)::value;
              with_cuda_type(grad_x_dtype, [&](auto gx) {
                using Tgx = decltype(gx);
                norm_backward_rows_kernel<Tin, Tout, Tgx, V>
                    <<<row_grid(R), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
                        ptr<Tout>(grad_y), ptr<Tin>(rows), rows.stride(0), R, static_cast<int>(D),
                        ptr<float>(w), ptr<float>(scale1p), N, ptr<float>(mean), ptr<float>(rstd),
                        ptr<Tgx>(residual_grad), mutable_ptr<Tgx>(out.x), out.x.stride(0));
                C10_CUDA_KERNEL_LAUNCH_CHECK();
              });
              if (!has_modulation && !w.defined()) return;
              const dim3 grid(static_cast<unsigned>(column_blocks(D, V)), static_cast<unsigned>(B),
                              static_cast<unsigned>(chunks));
              norm_backward_columns_kernel<Tin, Tout, V>
                  <<<grid, dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
                      ptr<Tout>(grad_y), ptr<Tin>(rows), rows.stride(0), static_cast<int>(D), N,
                      rows_per_chunk(N), ptr<float>(w), ptr<float>(scale1p), ptr<float>(mean),
                      ptr<float>(rstd), mutable_ptr<float>(part_shift),
                      mutable_ptr<float>(part_scale), mutable_ptr<float>(part_w));
              C10_CUDA_KERNEL_LAUNCH_CHECK();
            });
      });
    });
  }
  if (has_modulation) {
    out.shift = part_shift.sum(0);
    out.scale = part_scale.sum(0);
  }
  if (w.defined()) out.weight = part_w.sum(at::IntArrayRef{0, 1});
  return out;
}

}  // namespace microdit::nn::cuda_kernels
