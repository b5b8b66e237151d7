#include "microdit/nn/swiglu_projection.h"

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>

#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;
using NoAutocast = c10::impl::ExcludeDispatchKeyGuard;

// silu(a) * b for a, b the halves of h (on CUDA silu_mul's kernel reads them in place).
at::Tensor gate(const at::Tensor& h) {
  const int64_t f = h.size(-1) / 2;
  return silu_mul_values(h.narrow(-1, 0, f), h.narrow(-1, f, f));
}

// h's gradient for the gate's gradient g: silu_mul's gradients of a and b written into its
// halves.
at::Tensor gate_backward(const at::Tensor& g, const at::Tensor& h) {
  const int64_t f = h.size(-1) / 2;
  auto dh = at::empty(h.sizes(), h.options());
  silu_mul_gradients_into(g, h.narrow(-1, 0, f), h.narrow(-1, f, f), dh.narrow(-1, 0, f),
                          dh.narrow(-1, f, f));
  return dh;
}

class SwiGLUProjectionFunction : public torch::autograd::Function<SwiGLUProjectionFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w1,
                            const at::Tensor& w2, at::ScalarType dtype, bool float_weight_grad) {
    NoAutocast no_autocast(c10::autocast_dispatch_keyset);
    const auto x_c = x.to(dtype);
    const auto w_c = at::cat({w1.to(dtype), w2.to(dtype)}, 0);  // (2F, D)
    const auto h = at::linear(x_c, w_c);                        // (..., 2F)
    ctx->save_for_backward({x_c, w_c, h});
    ctx->saved_data["dtypes"] = std::vector<int64_t>{static_cast<int64_t>(x.scalar_type()),
                                                     static_cast<int64_t>(w1.scalar_type()),
                                                     static_cast<int64_t>(w2.scalar_type())};
    ctx->saved_data["float_weight_grad"] = float_weight_grad;
    return gate(h);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    NoAutocast no_autocast(c10::autocast_dispatch_keyset);
    const auto saved = ctx->get_saved_variables();
    const auto &x_c = saved[0], &w_c = saved[1], &h = saved[2];
    const auto dtypes = ctx->saved_data["dtypes"].toIntVector();
    auto dtype = [&](std::size_t i) { return static_cast<at::ScalarType>(dtypes[i]); };
    const auto dh = gate_backward(grads[0].to(h.scalar_type()).contiguous(), h);
    at::Tensor dx, dw1, dw2;
    if (ctx->needs_input_grad(0)) dx = at::matmul(dh, w_c).to(dtype(0));
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const auto dh2 = dh.reshape({-1, dh.size(-1)}).t();
      const auto x2 = x_c.reshape({-1, x_c.size(-1)});
      // (2F, D): W1's gradient in the first F rows, W2's in the others.
      const auto dw =
          ctx->saved_data["float_weight_grad"].toBool() ? product_in_float(dh2, x2) : dh2.mm(x2);
      const int64_t f = dw.size(0) / 2;
      dw1 = dw.narrow(0, 0, f).to(dtype(1));
      dw2 = dw.narrow(0, f, f).to(dtype(2));
    }
    return {dx, dw1, dw2, at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor swiglu_projection(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2) {
  TORCH_CHECK(w1.dim() == 2 && w1.sizes() == w2.sizes() && x.dim() >= 1 && x.size(-1) == w1.size(1),
              "swiglu_projection: x (..., D) and w1, w2 (F, D) expected, got ", x.sizes(), ", ",
              w1.sizes(), " and ", w2.sizes());
  const auto device = x.device().type();
  const auto dtype =
      at::autocast::is_autocast_enabled(device) && at::isFloatingType(x.scalar_type())
          ? at::autocast::get_autocast_dtype(device)
          : x.scalar_type();
  return SwiGLUProjectionFunction::apply(x, w1, w2, dtype, takes_fp32_weight_grad(x, w1));
}

}  // namespace microdit::nn
