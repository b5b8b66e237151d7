#include "microdit/nn/norm.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include "microdit/nn/fused_norm.h"

namespace microdit::nn {
LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_, bool affine) : dim(dim_), eps(eps_) {
  if (affine) weight = register_parameter("weight", at::ones({dim}));
}

namespace {
// at::layer_norm, under autocast in the autocast dtype for low-precision norms (LPLayerNorm).
at::Tensor unfused_layer_norm(const at::Tensor& x, const at::Tensor& weight, int64_t dim,
                              double eps, bool low_precision) {
  const auto device = x.device().type();
  if (low_precision && at::autocast::is_autocast_enabled(device)) {
    const auto dtype = at::autocast::get_autocast_dtype(device);
    auto w = weight.defined() ? weight.to(dtype) : weight;
    // Autocast would cast back to float32: step outside it for this one call.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return at::layer_norm(x.to(dtype), {dim}, w, {}, eps);
  }
  return at::layer_norm(x, {dim}, weight, {}, eps);
}
}  // namespace

at::ScalarType norm_output_dtype(const at::Tensor& x, bool low_precision_norm) {
  const auto device = x.device().type();
  if (!at::autocast::is_autocast_enabled(device)) return x.scalar_type();
  return low_precision_norm ? at::autocast::get_autocast_dtype(device) : at::kFloat;
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) { return forward_modulated(x, {}, {}); }

at::Tensor LayerNormImpl::forward_modulated(const at::Tensor& x, const at::Tensor& shift,
                                            const at::Tensor& scale) {
  if (execution.fast()) {
    const auto dtype = norm_output_dtype(x, execution.low_precision_norm);
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return fused_norm(x, weight, eps, shift, scale, dtype);
  }
  auto normed = unfused_layer_norm(x, weight, dim, eps, execution.low_precision_norm);
  if (!shift.defined()) return normed;
  return normed * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

ResidualAndNormed LayerNormImpl::forward_with_residual(const at::Tensor& x, const at::Tensor& shift,
                                                       const at::Tensor& scale) {
  if (execution.fast()) {
    const auto dtype = norm_output_dtype(x, execution.low_precision_norm);
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return fused_norm_with_residual(x, weight, eps, shift, scale, dtype);
  }
  return {x, forward_modulated(x, shift, scale)};
}

void LayerNormImpl::reset_parameters() {
  if (weight.defined()) {
    at::NoGradGuard no_grad;
    weight.fill_(1.0);
  }
}

}  // namespace microdit::nn
