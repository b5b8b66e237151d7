// CUDA kernels of nn/gated_residual: x + gate * y, forward and backward.
// Forward: a warp per row, V elements per access. Backward: a block per (columns,
// sample, chunk of rows) writes y's gradient (and x's where its dtype differs from the
// output's) and partial gate sums per chunk, added up by ATen.
// Legend: B samples, N tokens per sample, D channels.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "gated_residual_kernels.cuh"
#include "gated_residual_kernels.h"
#include "kernel_launch.cuh"

namespace microdit::nn::cuda_kernels {
namespace {

using namespace device;

void check_inputs(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
  TORCH_CHECK(x.dim() == 3 && x.sizes() == y.sizes() && x.is_contiguous() && y.is_contiguous(),
              "gated_residual kernels: contiguous x and y (B,N,D) of one shape expected, got ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(gate.dim() == 2 && gate.size(0) == x.size(0) && gate.size(1) == x.size(2) &&
                  gate.stride(1) == 1 && gate.scalar_type() == y.scalar_type(),
              "gated_residual kernels: gate (B,D) with unit column stride in y's dtype expected, "
              "got ",
              gate.sizes(), " ", gate.scalar_type());
  TORCH_CHECK(x.size(2) <= std::numeric_limits<int>::max() / kVector && x.size(0) <= kMaxGridYZ,
              "gated_residual kernels: at most ", kMaxGridYZ, " samples of width ",
              std::numeric_limits<int>::max() / kVector);
}

// Calls f(x's CUDA type, gate and y's CUDA type, the output's CUDA type).
template <typename F>
void with_types(at::ScalarType x_type, at::ScalarType y_type, F&& f) {
  with_cuda_type(x_type, [&](auto tx) {
    with_cuda_type(y_type, [&](auto tp) {
      using Tx = decltype(tx);
      using Tp = decltype(tp);
      using To = std::conditional_t<std::is_same_v<Tx, float> || std::is_same_v<Tp, float>, float,
                                    __nv_bfloat16>;
      f(tx, tp, To{});
    });
  });
}

}  // namespace

at::Tensor gated_residual_forward(const at::Tensor& x, const at::Tensor& gate,
                                  const at::Tensor& y) {
  check_inputs(x, gate, y);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto out_type = at::promote_types(x.scalar_type(), y.scalar_type());
  auto out = at::empty(x.sizes(), x.options().dtype(out_type));
  if (out.numel() == 0) return out;
  const int64_t N = x.size(1), D = x.size(2);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_types(x.scalar_type(), y.scalar_type(), [&](auto tx, auto tp, auto to) {
    using Tx = decltype(tx);
    using Tp = decltype(tp);
    using To = decltype(to);
    with_vector_width(D, gate.stride(0), {&x, &gate, &y, &out}, [&](auto vector) {
      constexpr int V = decltype(vector)::value;
      const int64_t R = x.numel() / D;
      gated_residual_forward_kernel<Tx, Tp, To, V>
          <<<static_cast<unsigned>(row_blocks(R)), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
              ptr<Tx>(x), ptr<Tp>(gate), gate.stride(0), ptr<Tp>(y), R, N, static_cast<int>(D),
              mutable_ptr<To>(out));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

GatedResidualGrads gated_residual_backward(const at::Tensor& grad, const at::Tensor& gate,
                                           const at::Tensor& y, at::ScalarType x_dtype) {
  check_inputs(grad, gate, y);
  TORCH_CHECK(grad.scalar_type() == at::promote_types(x_dtype, y.scalar_type()),
              "gated_residual kernels: gradient of dtype ", grad.scalar_type(), " for x of ",
              x_dtype, " and y of ", y.scalar_type());
  const c10::cuda::CUDAGuard guard(y.device());
  const int64_t B = y.size(0), N = y.size(1), D = y.size(2);
  const int64_t chunks = chunk_count(N);
  GatedResidualGrads out;
  out.y = at::empty_like(y);
  out.x =
      x_dtype == grad.scalar_type() ? grad : at::empty_like(grad, grad.options().dtype(x_dtype));
  auto part_gate = at::zeros({chunks, B, D}, y.options().dtype(at::kFloat));
  if (y.numel() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const at::Tensor dx = x_dtype == grad.scalar_type() ? at::Tensor() : out.x;
    with_types(x_dtype, y.scalar_type(), [&](auto tx, auto tp, auto to) {
      using Tx = decltype(tx);
      using Tp = decltype(tp);
      using To = decltype(to);
      with_vector_width(D, gate.stride(0), {&grad, &gate, &y, &out.y, &dx}, [&](auto vector) {
        constexpr int V = decltype(vector)::value;
        const dim3 grid(static_cast<unsigned>(column_blocks(D, V)), static_cast<unsigned>(B),
                        static_cast<unsigned>(chunks));
        gated_residual_backward_kernel<To, Tp, Tx, V>
            <<<grid, dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
                ptr<To>(grad), ptr<Tp>(gate), gate.stride(0), ptr<Tp>(y), static_cast<int>(D), N,
                rows_per_chunk(N), mutable_ptr<Tp>(out.y), mutable_ptr<Tx>(dx),
                mutable_ptr<float>(part_gate));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  out.gate = part_gate.sum(0);
  return out;
}

}  // namespace microdit::nn::cuda_kernels
