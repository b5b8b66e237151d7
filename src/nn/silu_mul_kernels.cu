// CUDA kernels of the SwiGLU activation silu(a) * b: forward one elementwise pass (the plain ops
// take two, silu then the product); backward one pass reading g, a and b and writing both
// gradients (the plain ops with silu(a) recomputed take four: silu, two products, silu_backward).
// The kernels walk contiguous tensors as one run of elements, four per access wherever the size
// and the pointers allow it; other operands are copied contiguous first.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

#include "kernel_launch.cuh"
#include "silu_mul_kernels.cuh"
#include "silu_mul_kernels.h"

namespace microdit::nn::cuda_kernels {
namespace {

using namespace device;

void check_like(const char* what, const at::Tensor& t, const at::Tensor& a) {
  TORCH_CHECK(t.sizes() == a.sizes() && t.scalar_type() == a.scalar_type(),
              "silu_mul kernels: ", what, " of a's shape and dtype expected (", a.sizes(), " ",
              a.scalar_type(), "), got ", t.sizes(), " ", t.scalar_type());
}

// Calls f(the CUDA type, the vector width) for contiguous tensors of like's dtype and numel.
template <typename F>
void dispatch(const at::Tensor& like, std::initializer_list<const at::Tensor*> tensors, F&& f) {
  with_cuda_type(like.scalar_type(), [&](auto t) {
    with_vector_width(like.numel(), like.numel(), tensors, [&](auto vector) { f(t, vector); });
  });
}

unsigned blocks(int64_t packs) { return static_cast<unsigned>(elementwise_blocks(packs)); }

}  // namespace

at::Tensor silu_mul_forward(const at::Tensor& a_in, const at::Tensor& b_in) {
  check_like("b", b_in, a_in);
  const c10::cuda::CUDAGuard guard(a_in.device());
  const auto a = a_in.contiguous(), b = b_in.contiguous();
  auto out = at::empty(a.sizes(), a.options());
  if (a.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(a, {&a, &b, &out}, [&](auto t, auto vector) {
    using T = decltype(t);
    constexpr int V = decltype(vector)::value;
    const int64_t packs = a.numel() / V;
    silu_mul_forward_kernel<T, V><<<blocks(packs), kElementwiseThreads, 0, stream>>>(
        ptr<T>(a), ptr<T>(b), packs, mutable_ptr<T>(out));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::pair<at::Tensor, at::Tensor> silu_mul_backward(const at::Tensor& g_in, const at::Tensor& a_in,
                                                    const at::Tensor& b_in) {
  check_like("b", b_in, a_in);
  check_like("g", g_in, a_in);
  const c10::cuda::CUDAGuard guard(a_in.device());
  const auto g = g_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous();
  auto da = at::empty(a.sizes(), a.options()), db = at::empty(a.sizes(), a.options());
  if (a.numel() == 0) return {da, db};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(a, {&g, &a, &b, &da, &db}, [&](auto t, auto vector) {
    using T = decltype(t);
    constexpr int V = decltype(vector)::value;
    const int64_t packs = a.numel() / V;
    silu_mul_backward_kernel<T, V><<<blocks(packs), kElementwiseThreads, 0, stream>>>(
        ptr<T>(g), ptr<T>(a), ptr<T>(b), packs, mutable_ptr<T>(da), mutable_ptr<T>(db));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {da, db};
}

}  // namespace microdit::nn::cuda_kernels
