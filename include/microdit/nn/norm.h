// LayerNorm without bias, as the official `create_norm`: 'layernorm' has a weight, 'np_layernorm'
// (used for QK-norm) has no parameters at all. LibTorch's LayerNorm always has a bias, so ours.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "microdit/nn/execution.h"
#include "microdit/nn/fused_norm.h"

namespace microdit::nn {

// The dtype a LayerNorm returns for x: under autocast the low dtype for low-precision norms
// (Composer's LPLayerNorm, as the official training runs: input and weight cast down, statistics in
// float32 inside the kernel) and float32 otherwise (autocast's layer_norm rule); without autocast
// x's.
at::ScalarType norm_output_dtype(const at::Tensor& x, bool low_precision_norm);

// Reference: at::layer_norm and the modulation as broadcasting ops. Fast: one fused operation
// (nn/fused_norm.h), and forward_with_residual folds the residual's gradient into its backward.
class LayerNormImpl : public torch::nn::Module, public HasExecution {
 public:
  LayerNormImpl(int64_t dim, double eps, bool affine = true);
  at::Tensor forward(const at::Tensor& x);
  // forward(x) * (1 + scale) + shift with (B,D) shift and scale for x (B,N,D): adaLN's modulate.
  // Undefined shift/scale: forward.
  at::Tensor forward_modulated(const at::Tensor& x, const at::Tensor& shift,
                               const at::Tensor& scale);
  // {x, forward_modulated(x, shift, scale)} for a block that adds a branch of the normed x back to
  // x: fast, as fused_norm_with_residual, whose backward also takes the residual's gradient;
  // reference, `residual` is x itself.
  ResidualAndNormed forward_with_residual(const at::Tensor& x, const at::Tensor& shift = {},
                                          const at::Tensor& scale = {});
  void reset_parameters();

  int64_t dim;
  double eps;
  at::Tensor weight;  // (D) or undefined when not affine
};
TORCH_MODULE(LayerNorm);

}  // namespace microdit::nn
