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

// How the kernels walk a tensor: rows of `cols` elements, `ld` apart. A contiguous tensor is one
// row (so four elements per access wherever its size allows, as before the halves); the halves
// of a wider tensor are rows of its last dim.
struct Rows {
  int64_t cols, ld;
  bool operator==(const Rows&) const = default;
};

// t's rows: one row when contiguous; rows of t.size(-1) where the last stride is 1 and the
// leading dims flatten into one; else nothing.
std::optional<Rows> rows_of(const at::Tensor& t) {
  if (t.is_contiguous()) return Rows{t.numel(), t.numel()};
  if (t.stride(-1) != 1) return std::nullopt;
  for (int64_t d = 0; d + 2 < t.dim(); ++d)
    if (t.size(d) > 1 && t.stride(d) != t.stride(d + 1) * t.size(d + 1)) return std::nullopt;
  return Rows{t.size(-1), t.stride(-2)};
}

// Calls f(the CUDA type, the vector width) for tensors of one dtype laid out as `rows`.
template <typename F>
void dispatch(const at::Tensor& like, Rows rows, std::initializer_list<const at::Tensor*> tensors,
              F&& f) {
  with_cuda_type(like.scalar_type(), [&](auto t) {
    with_vector_width(rows.cols, rows.ld, tensors, [&](auto vector) { f(t, vector); });
  });
}

// a and b as the kernels read them: both with the same rows, or both made contiguous.
std::pair<at::Tensor, at::Tensor> operands(const at::Tensor& a, const at::Tensor& b, Rows& rows) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(),
              "silu_mul kernels: a and b of one shape and dtype expected, got ", a.sizes(), " ",
              a.scalar_type(), " and ", b.sizes(), " ", b.scalar_type());
  const auto ra = rows_of(a), rb = rows_of(b);
  if (ra && ra == rb) {
    rows = *ra;
    return {a, b};
  }
  rows = Rows{a.numel(), a.numel()};
  return {a.contiguous(), b.contiguous()};
}

unsigned blocks(int64_t packs) { return static_cast<unsigned>(elementwise_blocks(packs)); }

}  // namespace

at::Tensor silu_mul_forward(const at::Tensor& a_in, const at::Tensor& b_in) {
  const c10::cuda::CUDAGuard guard(a_in.device());
  Rows rows{};
  const auto [a, b] = operands(a_in, b_in, rows);
  auto out = at::empty(a.sizes(), a.options());
  if (a.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(a, rows, {&a, &b, &out}, [&](auto t, auto vector) {
    using T = decltype(t);
    constexpr int V = decltype(vector)::value;
    const int64_t packs = a.numel() / V;
    silu_mul_forward_kernel<T, V><<<blocks(packs), kElementwiseThreads, 0, stream>>>(
        ptr<T>(a), ptr<T>(b), packs, rows.cols, rows.ld, mutable_ptr<T>(out));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

void silu_mul_backward_into(const at::Tensor& g_in, const at::Tensor& a_in, const at::Tensor& b_in,
                            const at::Tensor& da, const at::Tensor& db) {
  const c10::cuda::CUDAGuard guard(a_in.device());
  Rows rows{};
  const auto [a, b] = operands(a_in, b_in, rows);
  TORCH_CHECK(
      g_in.sizes() == a.sizes() && g_in.scalar_type() == a.scalar_type() &&
          da.sizes() == a.sizes() && db.sizes() == a.sizes() &&
          da.scalar_type() == a.scalar_type() && db.scalar_type() == a.scalar_type() &&
          rows_of(da) == rows && rows_of(db) == rows,
      "silu_mul kernels: the gradients must have the layout a and b are read with (rows of ",
      rows.cols, " elements ", rows.ld, " apart), got g ", g_in.sizes(), " da ", da.sizes(),
      " strides ", da.strides());
  const auto g = g_in.contiguous();
  if (a.numel() == 0) return;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(a, rows, {&g, &a, &b, &da, &db}, [&](auto t, auto vector) {
    using T = decltype(t);
    constexpr int V = decltype(vector)::value;
    const int64_t packs = a.numel() / V;
    silu_mul_backward_kernel<T, V><<<blocks(packs), kElementwiseThreads, 0, stream>>>(
        ptr<T>(g), ptr<T>(a), ptr<T>(b), packs, rows.cols, rows.ld, mutable_ptr<T>(da),
        mutable_ptr<T>(db));
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
