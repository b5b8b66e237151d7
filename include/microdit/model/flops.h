// Useful floating-point work of a MicroDiT training step, counted analytically: every matrix
// product (linear layers, the patch convolution, attention's two products) at 2 FLOPs per
// multiply-add, forward once and backward twice. Elementwise work, norms, softmax and the MoE's
// gathers are not counted: they move bytes, not matrix work. This is the numerator of MFU in
// microdit-bench and docs/performance.md.
#pragma once
#include <cstdint>

#include "microdit/model/config.h"

namespace microdit::model {

struct StepShape {
  int64_t batch = 256;
  double mask_ratio = 0.75;    // 0 = all tokens through the backbone
  int64_t caption_tokens = 77;
  // Token routing (model/token_route.h): backbone blocks route_start..route_end (inclusive) see
  // the routed_tokens of route_ratio. Not with mask_ratio.
  double route_ratio = 0;
  int64_t route_start = 0, route_end = -1;
};

// Forward FLOPs of one DiT call on `shape` (masked when mask_ratio > 0).
double forward_flops(const DiTConfig& config, const StepShape& shape);

// Training step: forward + backward (twice the forward: input and weight gradients).
inline double training_step_flops(const DiTConfig& config, const StepShape& shape) {
  return 3.0 * forward_flops(config, shape);
}

}  // namespace microdit::model
