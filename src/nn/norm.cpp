#include "microdit/nn/norm.h"

#include <ATen/ATen.h>

namespace microdit::nn {

LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_, bool affine) : dim(dim_), eps(eps_) {
  if (affine) weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  return at::layer_norm(x, {dim}, weight, {}, eps);
}

void LayerNormImpl::reset_parameters() {
  if (weight.defined()) {
    at::NoGradGuard no_grad;
    weight.fill_(1.0);
  }
}

}  // namespace microdit::nn
