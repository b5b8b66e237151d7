// Host helpers of the fused kernels' launchers (*_kernels.cu): the CUDA type of a dtype, the
// vector width the tensors allow, and typed data pointers.
#pragma once
#include <ATen/ATen.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernel_access.cuh"

namespace microdit::nn::cuda_kernels {

// Calls f with a value of the CUDA type of `type` (float32 or bfloat16: cuda_kernels.h).
template <typename F>
void with_cuda_type(at::ScalarType type, F&& f) {
  switch (type) {
    case at::kFloat:
      f(float{});
      break;
    case at::kBFloat16:
      f(__nv_bfloat16{});
      break;
    default:
      TORCH_CHECK(false, "fused kernels: no kernel for dtype ", type);
  }
}

// Calls f with std::integral_constant<int, V>: kVector where every access can be one of V
// elements (width and row stride multiples of V, each tensor aligned to V elements), else 1.
template <typename F>
void with_vector_width(int64_t D, int64_t row_stride, std::initializer_list<const at::Tensor*> ts,
                       F&& f) {
  using device::kVector;
  bool wide = D % kVector == 0 && row_stride % kVector == 0;
  for (const auto* t : ts) {
    if (!t->defined()) continue;
    const auto address = reinterpret_cast<std::uintptr_t>(t->data_ptr());
    wide = wide && address % (kVector * t->element_size()) == 0;
  }
  if (wide) {
    f(std::integral_constant<int, kVector>{});
  } else {
    f(std::integral_constant<int, 1>{});
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

}  // namespace microdit::nn::cuda_kernels
