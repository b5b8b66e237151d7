// CUDA kernels of nn/expert_combine: the expert-choice MoE's probability-weighted sum of each
// token's expert outputs. Forward: a warp per token row reads the token's choices from the
// slot table (no atomics, every output row written once, zeros included). Backward: a warp per
// choice row reads the chosen token's gradient row and the expert output row once, writes the
// output row's gradient and the probability's.
// Legend: B samples, T tokens per sample, D width, E experts, K tokens per expert.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>

#include "expert_combine_kernels.cuh"
#include "expert_combine_kernels.h"
#include "kernel_launch.cuh"

namespace microdit::nn::cuda_kernels {
namespace {

using namespace device;

void check_inputs(const at::Tensor& h, const at::Tensor& probs) {
  TORCH_CHECK(probs.dim() == 3 && probs.is_contiguous() && probs.scalar_type() == at::kFloat,
              "expert_combine kernels: contiguous float32 probs (B,E,K) expected, got ",
              probs.sizes(), " ", probs.scalar_type());
  TORCH_CHECK(h.dim() == 3 && h.is_contiguous() && h.size(0) == probs.size(1) &&
                  h.size(1) == probs.size(0) * probs.size(2),
              "expert_combine kernels: contiguous h (E,B*K,D) expected, got ", h.sizes(),
              " for probs ", probs.sizes());
  TORCH_CHECK(h.size(2) <= std::numeric_limits<int>::max() / kVector &&
                  probs.size(1) <= std::numeric_limits<int>::max(),
              "expert_combine kernels: width ", h.size(2), " or ", probs.size(1),
              " experts too large");
}

}  // namespace

at::Tensor expert_combine_forward(const at::Tensor& h, const at::Tensor& probs,
                                  const at::Tensor& slots) {
  check_inputs(h, probs);
  const int64_t B = probs.size(0), E = probs.size(1), K = probs.size(2), D = h.size(2);
  TORCH_CHECK(slots.dim() == 3 && slots.is_contiguous() && slots.scalar_type() == at::kInt &&
                  slots.size(0) == B && slots.size(2) == E,
              "expert_combine kernels: contiguous int32 slots (B,T,E) expected, got ",
              slots.sizes(), " ", slots.scalar_type());
  const int64_t T = slots.size(1);
  const c10::cuda::CUDAGuard guard(h.device());
  auto out = at::empty({B, T, D}, h.options());
  if (out.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_cuda_type(h.scalar_type(), [&](auto th) {
    using Th = decltype(th);
    with_vector_width(D, D, {&h, &out}, [&](auto vector) {
      constexpr int V = decltype(vector)::value;
      const int64_t R = B * T;
      expert_combine_forward_kernel<Th, V>
          <<<static_cast<unsigned>(row_blocks(R)), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
              ptr<Th>(h), ptr<float>(probs), ptr<int>(slots), R, T, static_cast<int>(E), B, K,
              static_cast<int>(D), mutable_ptr<Th>(out));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

ExpertCombineGrads expert_combine_backward(const at::Tensor& grad, const at::Tensor& h,
                                           const at::Tensor& probs, const at::Tensor& indices) {
  check_inputs(h, probs);
  const int64_t B = probs.size(0), E = probs.size(1), K = probs.size(2), D = h.size(2);
  TORCH_CHECK(indices.sizes() == probs.sizes() && indices.is_contiguous() &&
                  indices.scalar_type() == at::kLong,
              "expert_combine kernels: contiguous int64 indices ", probs.sizes(), " expected, got ",
              indices.sizes(), " ", indices.scalar_type());
  TORCH_CHECK(grad.dim() == 3 && grad.is_contiguous() && grad.size(0) == B && grad.size(2) == D &&
                  grad.scalar_type() == h.scalar_type(),
              "expert_combine kernels: contiguous gradient (B,T,D) in h's dtype expected, got ",
              grad.sizes(), " ", grad.scalar_type());
  const c10::cuda::CUDAGuard guard(h.device());
  ExpertCombineGrads out;
  out.h = at::empty_like(h);
  out.probs = at::zeros(probs.sizes(), probs.options());  // as the composite for width 0
  if (h.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_cuda_type(h.scalar_type(), [&](auto th) {
    using Th = decltype(th);
    with_vector_width(D, D, {&grad, &h, &out.h}, [&](auto vector) {
      constexpr int V = decltype(vector)::value;
      const int64_t R = h.numel() / D;
      expert_combine_backward_kernel<Th, V>
          <<<static_cast<unsigned>(row_blocks(R)), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
              ptr<Th>(grad), ptr<Th>(h), ptr<float>(probs), ptr<int64_t>(indices), R, grad.size(1),
              static_cast<int>(E), B, K, static_cast<int>(D), mutable_ptr<Th>(out.h),
              mutable_ptr<float>(out.probs));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace microdit::nn::cuda_kernels
