// LayerNorm without bias, as the official `create_norm`: 'layernorm' has a weight, 'np_layernorm'
// (used for QK-norm) has no parameters at all. LibTorch's LayerNorm always has a bias, so ours.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace microdit::nn {

// While one lives on this thread, LayerNorms under autocast run in the autocast dtype (input and
// weight cast down, statistics in float32 inside the kernel, output in the low dtype), as
// Composer's LPLayerNorm that the official training uses. Without it autocast runs them in float32.
class LowPrecisionNormGuard {
 public:
  explicit LowPrecisionNormGuard(bool enabled = true);
  ~LowPrecisionNormGuard();
  LowPrecisionNormGuard(const LowPrecisionNormGuard&) = delete;
  LowPrecisionNormGuard& operator=(const LowPrecisionNormGuard&) = delete;
  static bool active();

 private:
  bool previous_;
};

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
