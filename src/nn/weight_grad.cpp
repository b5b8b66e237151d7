#include "microdit/nn/weight_grad.h"

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>

namespace microdit::nn {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The operands cast as autocast casts them, the products run as cast, autocast off.
using NoAutocast = c10::impl::ExcludeDispatchKeyGuard;

at::Tensor cast(const at::Tensor& t, at::ScalarType dtype) { return t.defined() ? t.to(dtype) : t; }

int64_t dtype_code(const at::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.scalar_type()) : -1;
}

// What forward keeps for backward: the operands as cast, and the dtypes the gradients go back in.
void save(AutogradContext* ctx, const at::Tensor& x_c, const at::Tensor& w_c,
          std::vector<int64_t> dtypes) {
  ctx->save_for_backward({x_c, w_c});
  ctx->saved_data["dtypes"] = std::move(dtypes);
}

struct Saved {
  at::Tensor x_c, w_c;
  at::Tensor grad;  // of the output, in the operands' dtype
  std::vector<int64_t> dtypes;
  at::ScalarType dtype(std::size_t i) const { return static_cast<at::ScalarType>(dtypes[i]); }
};

Saved restore(AutogradContext* ctx, const tensor_list& grads) {
  const auto saved = ctx->get_saved_variables();
  return {saved[0], saved[1], grads[0].to(saved[0].scalar_type()),
          ctx->saved_data["dtypes"].toIntVector()};
}

// y = x W^T + b on the casts; gradients: x's as autocast's (a product in the low dtype), W's and
// b's in float32.
class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::ScalarType dtype) {
    NoAutocast no_autocast(c10::autocast_dispatch_keyset);
    const auto b = bias.value_or(at::Tensor());
    auto x_c = x.to(dtype), w_c = weight.to(dtype);
    save(ctx, x_c, w_c, {dtype_code(x), dtype_code(weight), dtype_code(b)});
    return at::linear(x_c, w_c, cast(b, dtype));
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    NoAutocast no_autocast(c10::autocast_dispatch_keyset);
    const auto s = restore(ctx, grads);
    const auto g2 = s.grad.reshape({-1, s.grad.size(-1)});
    at::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = at::matmul(s.grad, s.w_c).to(s.dtype(0));
    if (ctx->needs_input_grad(1))
      dw = product_in_float(g2.t(), s.x_c.reshape({-1, s.x_c.size(-1)})).to(s.dtype(1));
    if (s.dtypes[2] >= 0 && ctx->needs_input_grad(2))
      db = g2.sum(0, /*keepdim=*/false, at::kFloat).to(s.dtype(2));
    return {dx, dw, db, at::Tensor()};
  }
};

// y = bmm(x, w) on the casts; x's gradient a low-precision product, w's a float32 one.
class WeightBmmFunction : public torch::autograd::Function<WeightBmmFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            at::ScalarType dtype) {
    NoAutocast no_autocast(c10::autocast_dispatch_keyset);
    auto x_c = x.to(dtype), w_c = w.to(dtype);
    save(ctx, x_c, w_c, {dtype_code(x), dtype_code(w)});
    return at::bmm(x_c, w_c);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    NoAutocast no_autocast(c10::autocast_dispatch_keyset);
    const auto s = restore(ctx, grads);
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = s.grad.bmm(s.w_c.transpose(1, 2)).to(s.dtype(0));
    if (ctx->needs_input_grad(1))
      dw = product_in_float(s.x_c.transpose(1, 2), s.grad).to(s.dtype(1));
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

at::Tensor product_in_float(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(
      (a.dim() == 2 || a.dim() == 3) && b.dim() == a.dim() && a.scalar_type() == b.scalar_type(),
      "product_in_float: two matrices or batches of one dtype expected, got ", a.scalar_type(), " ",
      a.sizes(), " and ", b.scalar_type(), " ", b.sizes());
  // Autocast (on in a backward that runs on the CPU thread under it) would cast down again.
  NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const bool low = a.scalar_type() == at::kBFloat16 || a.scalar_type() == at::kHalf;
  if (a.is_cuda() && low) {
    // cuBLAS's low-precision product with a float32 output (ATen's mm/bmm with out_dtype).
    return a.dim() == 2 ? at::mm(a, b, at::kFloat) : at::bmm(a, b, at::kFloat);
  }
  // Elsewhere: the operands widened exactly to float32, the same products and float32 sums.
  const auto fa = a.to(at::kFloat), fb = b.to(at::kFloat);
  return a.dim() == 2 ? at::mm(fa, fb) : at::bmm(fa, fb);
}

bool takes_fp32_weight_grad(const at::Tensor& x, const at::Tensor& weight) {
  const auto device = x.device().type();
  return at::autocast::is_autocast_enabled(device) &&
         weight.scalar_type() == at::kFloat && weight.requires_grad() && at::GradMode::is_enabled();
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  bool fp32_weight_grad) {
  if (!fp32_weight_grad || !takes_fp32_weight_grad(x, weight)) return at::linear(x, weight, bias);
  const auto dtype = at::autocast::get_autocast_dtype(x.device().type());
  return LinearFunction::apply(x, weight, bias.defined() ? std::optional(bias) : std::nullopt,
                               dtype);
}

at::Tensor weight_bmm(const at::Tensor& x, const at::Tensor& w, bool fp32_weight_grad) {
  TORCH_CHECK(x.dim() == 3 && w.dim() == 3 && x.size(0) == w.size(0) && x.size(2) == w.size(1),
              "weight_bmm: expects x (E,M,D) and w (E,D,F), got ", x.sizes(), " and ", w.sizes());
  if (!fp32_weight_grad || !takes_fp32_weight_grad(x, w)) return at::bmm(x, w);
  return WeightBmmFunction::apply(x, w, at::autocast::get_autocast_dtype(x.device().type()));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  return nn::linear(x, weight, bias, execution.fast());
}

}  // namespace microdit::nn
