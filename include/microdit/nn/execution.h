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

}  // namespace microdit::nn
