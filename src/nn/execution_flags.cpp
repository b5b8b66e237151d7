#include "microdit/nn/execution_flags.h"

#include <fmt/format.h>

#include <array>
#include <stdexcept>

namespace microdit::nn {
namespace {

struct Flag {
  std::string_view name;
  bool ExecutionOptions::*field;
  bool value;  // what the flag sets the switch to
  std::string_view help;
};

constexpr std::array<Flag, 12> kFlags{{
    {"--fp32-norm", &ExecutionOptions::low_precision_norm, false,
     "plain autocast: LayerNorms in float32 (default: bf16, as the official runs)"},
    {"--fused-norm", &ExecutionOptions::fused_norm, true,
     "LayerNorm + adaLN modulation as one operation (CUDA kernels where built)"},
    {"--fused-residual", &ExecutionOptions::fused_residual, true,
     "the blocks' gated residuals x + gate * y as one operation (same)"},
    {"--recompute-act", &ExecutionOptions::recompute_activations, true,
     "FFN activations recomputed in backward instead of kept (less memory)"},
    {"--moe-rows", &ExecutionOptions::moe_row_dispatch, true,
     "MoE tokens moved by row index (index_select/index_add), no transposing copies"},
    {"--fused-combine", &ExecutionOptions::fused_combine, true,
     "the MoE's probability-weighted sum of expert outputs as one operation (same)"},
    {"--fused-dispatch", &ExecutionOptions::fused_dispatch, true,
     "the gathering of the MoE experts' tokens as one operation, backward without atomics"},
    {"--fold-residual", &ExecutionOptions::fold_residual_grad, true,
     "with --fused-norm: the residual stream's gradient added inside the norms' backward"},
    {"--fp32-wgrad", &ExecutionOptions::fp32_weight_grads, true,
     "weight gradients in float32 from the products themselves (no bf16 rounding, no cast)"},
    {"--split-qk-norm", &ExecutionOptions::split_qk_norm, true,
     "with --fused-norm: q, k, v split from their projection with the QK-norm as one operation"},
    {"--one-pass-norm-grad", &ExecutionOptions::one_pass_norm_grad, true,
     "with --fused-norm: the norms' backward as one kernel (column sums in the row pass; CUDA)"},
    {"--merged-swiglu", &ExecutionOptions::merged_swiglu, true,
     "the SwiGLU FFN's two input projections as one matrix product (activation recomputed)"},
}};

}  // namespace

bool set_execution_flag(std::string_view flag, ExecutionOptions& options) {
  for (const auto& f : kFlags) {
    if (f.name == flag) {
      options.*f.field = f.value;
      return true;
    }
  }
  return false;
}

void check_execution_flags(const ExecutionOptions& options) {
  if (options.fold_residual_grad && !options.fused_norm)
    throw std::invalid_argument(
        "--fold-residual needs --fused-norm (the fold is part of the fused norm's backward)");
  if (options.split_qk_norm && !options.fused_norm)
    throw std::invalid_argument(
        "--split-qk-norm needs --fused-norm (the split runs the fused norm's kernels)");
  if (options.one_pass_norm_grad && !options.fused_norm)
    throw std::invalid_argument(
        "--one-pass-norm-grad needs --fused-norm (it is the fused norm's backward kernel)");
}

std::string execution_flags_usage() {
  std::string usage;
  for (const auto& f : kFlags) usage += fmt::format("  {:<15} {}\n", f.name, f.help);
  return usage;
}

std::string execution_flags_of(const ExecutionOptions& options) {
  std::string flags;
  for (const auto& f : kFlags) {
    if (options.*f.field == f.value && ExecutionOptions{}.*f.field != f.value) {
      flags += flags.empty() ? "" : " ";
      flags += f.name;
    }
  }
  return flags;
}

}  // namespace microdit::nn
