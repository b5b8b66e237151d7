#include "microdit/nn/norm.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace microdit::nn {
namespace {
thread_local bool low_precision_norm = false;
}  // namespace

LowPrecisionNormGuard::LowPrecisionNormGuard(bool enabled) : previous_(low_precision_norm) {
  low_precision_norm = enabled;
}
LowPrecisionNormGuard::~LowPrecisionNormGuard() { low_precision_norm = previous_; }
bool LowPrecisionNormGuard::active() { return low_precision_norm; }

LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_, bool affine) : dim(dim_), eps(eps_) {
  if (affine) weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  const auto device = x.device().type();
  if (low_precision_norm && at::autocast::is_autocast_enabled(device)) {
    const auto dtype = at::autocast::get_autocast_dtype(device);
    auto w = weight.defined() ? weight.to(dtype) : weight;
    // Autocast would cast back to float32: step outside it for this one call.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return at::layer_norm(x.to(dtype), {dim}, w, {}, eps);
  }
  return at::layer_norm(x, {dim}, weight, {}, eps);
}

void LayerNormImpl::reset_parameters() {
  if (weight.defined()) {
    at::NoGradGuard no_grad;
    weight.fill_(1.0);
  }
}

}  // namespace microdit::nn
