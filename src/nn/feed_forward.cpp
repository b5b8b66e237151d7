#include "microdit/nn/feed_forward.h"

#include <ATen/ATen.h>

#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/init.h"

namespace microdit::nn {

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden_dim, int64_t multiple_of,
                                 bool use_bias) {
  const int64_t f = swiglu_hidden_dim(hidden_dim, multiple_of);
  auto linear = [&](int64_t in, int64_t out) {
    return nn::Linear(torch::nn::LinearOptions(in, out).bias(use_bias));
  };
  w1 = register_module("w1", linear(dim, f));
  w2 = register_module("w2", linear(dim, f));
  w3 = register_module("w3", linear(f, dim));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
  if (execution.fast()) return w3(silu_mul(w1(x), w2(x)));
  return w3(at::silu(w1(x)) * w2(x));
}

void FeedForwardImpl::custom_init(double out_std) {
  trunc_normal_(w1->weight, 0.0, 0.02);
  trunc_normal_(w2->weight, 0.0, out_std);
  trunc_normal_(w3->weight, 0.0, out_std);
}

MlpImpl::MlpImpl(int64_t in, int64_t hidden, int64_t out, std::optional<double> norm_eps) {
  fc1 = register_module("fc1", nn::Linear(in, hidden));
  if (norm_eps) norm = register_module("norm", LayerNorm(hidden, *norm_eps));
  fc2 = register_module("fc2", nn::Linear(hidden, out));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  auto h = at::gelu(fc1(x), "tanh");
  if (norm) h = norm(h);
  return fc2(h);
}

}  // namespace microdit::nn
