// CUDA kernel of the MoE experts' exact-erf GELU backward with gelu(u) recomputed: one pass
// reading the gradient and u and writing gelu(u) and u's gradient, the latter over the incoming
// gradient (ATen: gelu(u), then gelu_backward, u read twice and a new tensor for the gradient).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

#include "gelu_kernels.cuh"
#include "gelu_kernels.h"
#include "kernel_launch.cuh"

namespace microdit::nn::cuda_kernels {

using namespace device;

std::pair<at::Tensor, at::Tensor> gelu_recompute_backward(at::Tensor grad_h,
                                                          const at::Tensor& u_in) {
  TORCH_CHECK(grad_h.sizes() == u_in.sizes() && grad_h.scalar_type() == u_in.scalar_type() &&
                  grad_h.is_contiguous(),
              "gelu kernels: a contiguous gradient of u's shape and dtype expected, got ",
              grad_h.sizes(), " ", grad_h.scalar_type(), " for ", u_in.sizes(), " ",
              u_in.scalar_type());
  const c10::cuda::CUDAGuard guard(u_in.device());
  const auto u = u_in.contiguous();
  auto h = at::empty_like(u);
  if (u.numel() == 0) return {h, grad_h};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_cuda_type(u.scalar_type(), [&](auto t) {
    with_vector_width(u.numel(), u.numel(), {&grad_h, &u, &h}, [&](auto vector) {
      using T = decltype(t);
      constexpr int V = decltype(vector)::value;
      const int64_t packs = u.numel() / V;
      gelu_recompute_backward_kernel<T, V>
          <<<static_cast<unsigned>(elementwise_blocks(packs)), kElementwiseThreads, 0, stream>>>(
              ptr<T>(grad_h), ptr<T>(u), packs, mutable_ptr<T>(h), mutable_ptr<T>(grad_h));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {h, grad_h};
}

}  // namespace microdit::nn::cuda_kernels
