// CUDA kernels of the SwiGLU activation silu(a) * b: forward one elementwise pass (the plain ops
// take two, silu then the product); backward one pass reading g, a and b and writing both
// gradients (the plain ops with silu(a) recomputed take four: silu, two products, silu_backward).
// a and b (and their gradients) may be rows of a wider tensor, as the two halves of the merged
// SwiGLU projection's output (nn/swiglu_projection).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <optional>

#include "kernel_launch.cuh"
#include "silu_mul_kernels.cuh"
#include "silu_mul_kernels.h"

namespace microdit::nn::cuda_kernels {
namespace {

using namespace device;

// The distance between t's rows of t.size(-1) elements where t is such rows (unit last stride,
// the leading dims flattening into one), else nothing.
std::optional<int64_t> row_stride(const at::Tensor& t) {
  if (t.dim() == 0 || t.stride(-1) != 1) return std::nullopt;
  if (t.dim() == 1) return t.size(0);
  for (int64_t d = 0; d + 2 < t.dim(); ++d)
    if (t.size(d) > 1 && t.stride(d) != t.stride(d + 1) * t.size(d + 1)) return std::nullopt;
  return t.stride(-2);
}

// Calls f(the CUDA type, the vector width, cols, ld) for tensors of one dtype whose rows of cols
// elements are ld apart (all of `strided`) or contiguous (the others).
template <typename F>
void dispatch(const at::Tensor& like, int64_t ld, std::initializer_list<const at::Tensor*> tensors,
              F&& f) {
  const int64_t cols = like.dim() == 0 ? 1 : like.size(-1);
  with_cuda_type(like.scalar_type(), [&](auto t) {
    with_vector_width(cols, ld, tensors, [&](auto vector) { f(t, vector, cols); });
  });
}

// a and b as rows the kernels read: both with one row stride, or both made contiguous.
std::pair<at::Tensor, at::Tensor> operands(const at::Tensor& a, const at::Tensor& b, int64_t& ld) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(),
              "silu_mul kernels: a and b of one shape and dtype expected, got ", a.sizes(), " ",
              a.scalar_type(), " and ", b.sizes(), " ", b.scalar_type());
  const auto la = row_stride(a), lb = row_stride(b);
  if (la && lb && *la == *lb) {
    ld = *la;
    return {a, b};
  }
  ld = a.dim() == 0 ? 1 : a.size(-1);
  return {a.contiguous(), b.contiguous()};
}

unsigned blocks(int64_t packs) { return static_cast<unsigned>(elementwise_blocks(packs)); }

}  // namespace

at::Tensor silu_mul_forward(const at::Tensor& a_in, const at::Tensor& b_in) {
  const c10::cuda::CUDAGuard guard(a_in.device());
  int64_t ld = 0;
  const auto [a, b] = operands(a_in, b_in, ld);
  auto out = at::empty(a.sizes(), a.options());
  if (a.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(a, ld, {&a, &b, &out}, [&](auto t, auto vector, int64_t cols) {
    using T = decltype(t);
    constexpr int V = decltype(vector)::value;
    const int64_t packs = a.numel() / V;
    silu_mul_forward_kernel<T, V><<<blocks(packs), kElementwiseThreads, 0, stream>>>(
        ptr<T>(a), ptr<T>(b), packs, cols, ld, mutable_ptr<T>(out));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

void silu_mul_backward_into(const at::Tensor& g_in, const at::Tensor& a_in, const at::Tensor& b_in,
                            const at::Tensor& da, const at::Tensor& db) {
  const c10::cuda::CUDAGuard guard(a_in.device());
  int64_t ld = 0;
  const auto [a, b] = operands(a_in, b_in, ld);
  TORCH_CHECK(g_in.sizes() == a.sizes() && g_in.scalar_type() == a.scalar_type() &&
                  da.sizes() == a.sizes() && db.sizes() == a.sizes() &&
                  da.scalar_type() == a.scalar_type() && db.scalar_type() == a.scalar_type() &&
                  row_stride(da) == ld && row_stride(db) == ld,
              "silu_mul kernels: the gradients must have a's shape, dtype and row stride (", ld,
              "), got g ", g_in.sizes(), " da ", da.sizes(), " strides ", da.strides());
  const auto g = g_in.contiguous();
  if (a.numel() == 0) return;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(a, ld, {&g, &a, &b, &da, &db}, [&](auto t, auto vector, int64_t cols) {
    using T = decltype(t);
    constexpr int V = decltype(vector)::value;
    const int64_t packs = a.numel() / V;
    silu_mul_backward_kernel<T, V><<<blocks(packs), kElementwiseThreads, 0, stream>>>(
        ptr<T>(g), ptr<T>(a), ptr<T>(b), packs, cols, ld, mutable_ptr<T>(da), mutable_ptr<T>(db));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::pair<at::Tensor, at::Tensor> silu_mul_backward(const at::Tensor& g, const at::Tensor& a,
                                                    const at::Tensor& b) {
  auto da = at::empty(a.sizes(), a.options()), db = at::empty(b.sizes(), b.options());
  silu_mul_backward_into(g, a.contiguous(), b.contiguous(), da, db);
  return {da, db};
}

}  // namespace microdit::nn::cuda_kernels
