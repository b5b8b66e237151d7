// LayerNorm without bias, as the official `create_norm`: 'layernorm' has a weight, 'np_layernorm'
// (used for QK-norm) has no parameters at all. LibTorch's LayerNorm always has a bias, so ours.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace microdit::nn {

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, bool affine = true);
  at::Tensor forward(const at::Tensor& x);
  void reset_parameters();

  int64_t dim;
  double eps;
  at::Tensor weight;  // (D) or undefined when not affine
};
TORCH_MODULE(LayerNorm);

}  // namespace microdit::nn
