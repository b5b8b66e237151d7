// The command-line flags of the execution switches (execution.h), one list for the tools that
// take them (microdit-bench, microdit-check-reference), so each flag means the same in both.
#pragma once
#include <string>
#include <string_view>

#include "microdit/nn/execution.h"

namespace microdit::nn {

// Sets the switch `flag` names (--fp32-norm, --fused-norm, --fused-residual, --recompute-act,
// --moe-rows, --fused-combine, --fused-dispatch, --fold-residual, --fp32-wgrad, --split-qk-norm)
// in `options`; false when `flag` is none of them.
bool set_execution_flag(std::string_view flag, ExecutionOptions& options);

// Throws std::invalid_argument naming the flag when `options` sets a switch that needs another
// (--fold-residual or --split-qk-norm without --fused-norm).
void check_execution_flags(const ExecutionOptions& options);

// One usage line per flag, indented as the tools' usage texts.
std::string execution_flags_usage();

// The flags that give `options` from the defaults, space-separated ("" for the defaults).
std::string execution_flags_of(const ExecutionOptions& options);

}  // namespace microdit::nn
