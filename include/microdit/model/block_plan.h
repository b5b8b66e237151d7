// The per-block plan of a MicroDiT: layer-wise scaling of attention and FFN widths across the
// backbone (paper Sec. 3.3), where expert-choice MoE replaces the dense FFN, and each block's
// depth-scaled init std. Mirrors the official DiT.__init__ exactly.
#pragma once
#include <vector>

#include "microdit/model/config.h"
#include "microdit/nn/dit_block.h"

namespace microdit::model {

// numpy.linspace(start, stop, num): start + i*step in float64, the last element exactly `stop`.
std::vector<double> numpy_linspace(double start, double stop, int64_t num);

// A ratio list of length depth as is; a shorter list has each entry repeated depth/len times.
std::vector<double> expand_ratios(const std::vector<double>& ratios, int64_t depth);

// Backbone: MoE in blocks i = 0..depth-2 with (i+1) % n == 0 (never the last block).
std::vector<bool> backbone_moe_blocks(int64_t depth, int64_t experts_every_n);
// Patch-mixer: MoE in blocks i = 1..depth-1 with (i+1) % n == 0 (the last block can be MoE).
std::vector<bool> mixer_moe_blocks(int64_t mixer_depth, int64_t experts_every_n);

std::vector<nn::DiTBlockOptions> backbone_blocks(const DiTConfig& config);
std::vector<nn::DiTBlockOptions> mixer_blocks(const DiTConfig& config);

}  // namespace microdit::model
