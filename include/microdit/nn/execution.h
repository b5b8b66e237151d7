// How the model runs, not what it computes: the reference path (the plain LibTorch operations
// that the parity tool checks against the official code) or the fast path (fused operations,
// recomputed activations, float32 weight gradients). Chosen once, when a model is built, by
// apply_execution, which sets it on every module that has the choice; forward passes read their
// own module's setting, never a global or thread-local one (as torchtitan applies its
// parallelisms from outside the model files).
#pragma once
#include <torch/nn/module.h>

#include <string>
#include <string_view>

// Transitional (removed with the thread-local switches).
#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/expert_choice_moe.h"
#include "microdit/nn/expert_combine.h"
#include "microdit/nn/expert_dispatch.h"
#include "microdit/nn/fused_norm.h"
#include "microdit/nn/gated_residual.h"
#include "microdit/nn/norm.h"
#include "microdit/nn/swiglu_projection.h"
#include "microdit/nn/weight_grad.h"

namespace microdit::nn {

enum class ExecutionMode {
  reference,  // the plain LibTorch operations
  // The measured fastest combination, the same function: LayerNorm + adaLN modulation as one
  // operation (the residual stream's gradient added in its backward, the attentions' QK-norm split
  // from their projections in one pass), the gated residuals as one operation, the MoE's dispatch
  // and combine as one operation each, FFN activations recomputed in backward, and under autocast
  // the weight gradients in float32 from the products. CUDA kernels where the build has them, their
  // composite ATen forms elsewhere (the CPU tests run those).
  fast,
};

struct Execution {
  ExecutionMode mode = ExecutionMode::reference;
  // Under autocast the LayerNorms run in the autocast dtype (Composer's LPLayerNorm, as the
  // official training runs); false: plain autocast, LayerNorms in float32. optim.precision decides
  // it (bf16 / bf16-fp32norm), not the mode.
  bool low_precision_norm = false;
  bool fast() const { return mode == ExecutionMode::fast; }
};

// "reference" or "fast".
std::string_view execution_mode_name(ExecutionMode mode);
// Throws std::invalid_argument naming `what` (a flag or config key) for any other name.
ExecutionMode parse_execution_mode(std::string_view name, std::string_view what);

// A module whose forward has a reference and a fast form (LayerNorm, the attentions, the DiT
// blocks, the FFNs, the MoE, Linear): it keeps the setting apply_execution gave it.
class HasExecution {
 public:
  virtual ~HasExecution() = default;
  Execution execution;
};

// Sets `execution` on `root` and every module under it that has the choice.
void apply_execution(torch::nn::Module& root, const Execution& execution);

// Transitional: the thread-local switches, removed in this change.
struct ExecutionOptions {
  // LayerNorms in bf16 under autocast, as the official runs (Composer's LPLayerNorm).
  bool low_precision_norm = true;
  // LayerNorm + adaLN modulation as one operation (CUDA kernels where built).
  bool fused_norm = false;
  // The blocks' gated residuals x + gate * y as one operation (CUDA kernels where built).
  bool fused_residual = false;
  // FFN activations recomputed in backward instead of kept.
  bool recompute_activations = false;
  // MoE tokens moved by row index.
  bool moe_row_dispatch = false;
  // The MoE's probability-weighted sum of its experts' outputs as one operation.
  bool fused_combine = false;
  // The gathering of the MoE experts' tokens as one operation (backward without atomics).
  bool fused_dispatch = false;
  // With fused_norm: the residual stream's gradient added inside the norms' backward.
  bool fold_residual_grad = false;
  // Under autocast: weight gradients in float32 from the products themselves.
  bool fp32_weight_grads = false;
  // With fused_norm: q, k and v split from their projection with the QK-norm as one operation.
  bool split_qk_norm = false;
  // With fused_norm: the norms' CUDA backward in one kernel (the column sums in the row pass).
  bool one_pass_norm_grad = false;
  // The SwiGLU FFN's two input projections as one matrix product (activation recomputed).
  bool merged_swiglu = false;
};

// Sets every switch of `options` on this thread while it lives.
class ExecutionGuard {
 public:
  explicit ExecutionGuard(const ExecutionOptions& options)
      : low_precision_norm_(options.low_precision_norm),
        fused_norm_(options.fused_norm),
        fused_residual_(options.fused_residual),
        recompute_activations_(options.recompute_activations),
        moe_row_dispatch_(options.moe_row_dispatch),
        fused_combine_(options.fused_combine),
        fused_dispatch_(options.fused_dispatch),
        fold_residual_grad_(options.fold_residual_grad),
        fp32_weight_grads_(options.fp32_weight_grads),
        split_qk_norm_(options.split_qk_norm),
        one_pass_norm_grad_(options.one_pass_norm_grad),
        merged_swiglu_(options.merged_swiglu) {}

 private:
  LowPrecisionNormGuard low_precision_norm_;
  FusedNormGuard fused_norm_;
  FusedResidualGuard fused_residual_;
  RecomputeActivationsGuard recompute_activations_;
  MoERowDispatchGuard moe_row_dispatch_;
  FusedCombineGuard fused_combine_;
  FusedDispatchGuard fused_dispatch_;
  FoldResidualGradGuard fold_residual_grad_;
  Fp32WeightGradGuard fp32_weight_grads_;
  SplitQkNormGuard split_qk_norm_;
  OnePassNormGradGuard one_pass_norm_grad_;
  MergedSwiGLUGuard merged_swiglu_;
};


}  // namespace microdit::nn
