#include "microdit/nn/activation_recompute.h"

#include <torch/autograd.h>

#include <utility>

#include "gelu_kernels.h"
#include "microdit/nn/weight_grad.h"
#include "silu_mul_kernels.h"

namespace microdit::nn {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

#ifdef MICRODIT_WITH_CUDA_KERNELS
// silu_mul's CUDA kernels: the same arithmetic in one pass each way.
bool use_kernels(const at::Tensor& a, const at::Tensor& b) {
  return a.is_cuda() && cuda_kernels::supports(a.scalar_type()) &&
         a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes();
}
#endif

// The gradients of a and b for silu(a) * b's gradient g: the plain ops' autograd formulas
// (MulBackward, SiluBackward) on the recomputed silu(a), or silu_mul's backward kernel.
std::pair<at::Tensor, at::Tensor> silu_mul_gradients(const at::Tensor& g, const at::Tensor& a,
                                                     const at::Tensor& b) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (use_kernels(a, b) && g.scalar_type() == a.scalar_type())
    return cuda_kernels::silu_mul_backward(g, a, b);
#endif
  return {at::silu_backward(g * b, a), g * at::silu(a)};
}

// silu(a) * b: the plain ops, or silu_mul's forward kernel.
at::Tensor silu_mul_values(const at::Tensor& a, const at::Tensor& b) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (use_kernels(a, b)) return cuda_kernels::silu_mul_forward(a, b);
#endif
  return at::silu(a) * b;
}

// Each backward below is the plain ops' autograd formulas (MulBackward, SiluBackward,
// BmmBackward, GeluBackward, ToCopyBackward) on the recomputed activation.
class SiluMulFunction : public torch::autograd::Function<SiluMulFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return silu_mul_values(a, b);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto [da, db] = silu_mul_gradients(grads[0], saved[0], saved[1]);
    return {da, db};
  }
};

// With `float_weight_grad` (nn/weight_grad.h) w's gradient comes from the product in float32.
class GeluBmmFunction : public torch::autograd::Function<GeluBmmFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& u, const at::Tensor& w,
                            bool float_weight_grad) {
    auto w_cast = w.to(u.scalar_type());
    ctx->save_for_backward({u, w_cast});
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    ctx->saved_data["float_weight_grad"] = float_weight_grad;
    return at::bmm(at::gelu(u), w_cast);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &u = saved[0], &w_cast = saved[1], &g = grads[0];
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    auto [h, grad_u] = recompute_and_backward(g.bmm(w_cast.transpose(1, 2)), u);
    const auto h_t = h.transpose(1, 2);
    auto grad_w =
        ctx->saved_data["float_weight_grad"].toBool() ? product_in_float(h_t, g) : h_t.bmm(g);
    return {grad_u, grad_w.to(w_dtype), at::Tensor()};
  }

 private:
  // {gelu(u), u's gradient} for gelu(u)'s gradient grad_h (a fresh product, so the kernel may
  // write u's gradient over it).
  static std::pair<at::Tensor, at::Tensor> recompute_and_backward(at::Tensor grad_h,
                                                                  const at::Tensor& u) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
    if (use_kernels(u, grad_h) && grad_h.is_contiguous())
      return cuda_kernels::gelu_recompute_backward(std::move(grad_h), u);
#endif
    return {at::gelu(u), at::gelu_backward(grad_h, u)};
  }
};
}  // namespace

at::Tensor silu_mul(const at::Tensor& a, const at::Tensor& b) {
  return SiluMulFunction::apply(a, b);
}

at::Tensor gelu_bmm(const at::Tensor& u, const at::Tensor& w, bool fp32_weight_grad) {
  TORCH_CHECK(u.dim() == 3 && w.dim() == 3 && u.size(0) == w.size(0) && u.size(2) == w.size(1),
              "gelu_bmm: expects u (E,M,F) and w (E,F,D), got ", u.sizes(), " and ", w.sizes());
  return GeluBmmFunction::apply(u, w, fp32_weight_grad && takes_fp32_weight_grad(u, w));
}

}  // namespace microdit::nn
