// LayerNorm without bias, as the official `create_norm`: 'layernorm' has a weight, 'np_layernorm'
// (used for QK-norm) has no parameters at all. LibTorch's LayerNorm always has a bias, so ours.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "microdit/nn/fused_norm.h"
#include "microdit/util/thread_flag.h"

namespace microdit::nn {

// While one lives on this thread, LayerNorms under autocast run in the autocast dtype (input and
// weight cast down, statistics in float32 inside the kernel, output in the low dtype), as
// Composer's LPLayerNorm that the official training uses. Without it autocast runs them in float32.
using LowPrecisionNormGuard = util::ThreadFlagGuard<struct LowPrecisionNormTag>;

// The dtype a LayerNorm returns for x: under autocast the low dtype for low-precision norms
// (LowPrecisionNormGuard) and float32 otherwise (autocast's layer_norm rule); without autocast x's.
at::ScalarType norm_output_dtype(const at::Tensor& x);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, bool affine = true);
  at::Tensor forward(const at::Tensor& x);
  // forward(x) * (1 + scale) + shift with (B,D) shift and scale for x (B,N,D): adaLN's modulate;
  // one fused operation under FusedNormGuard (nn/fused_norm.h). Undefined shift/scale: forward.
  at::Tensor forward_modulated(const at::Tensor& x, const at::Tensor& shift,
                               const at::Tensor& scale);
  // {x, forward_modulated(x, shift, scale)} for a block that adds a branch of the normed x back to
  // x: under FusedNormGuard and FoldResidualGradGuard as fused_norm_with_residual, whose backward
  // also takes the residual's gradient; else `residual` is x itself.
  ResidualAndNormed forward_with_residual(const at::Tensor& x, const at::Tensor& shift = {},
                                          const at::Tensor& scale = {});
  void reset_parameters();

  int64_t dim;
  double eps;
  at::Tensor weight;  // (D) or undefined when not affine
};
TORCH_MODULE(LayerNorm);

}  // namespace microdit::nn
