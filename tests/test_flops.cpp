// The analytic FLOP count behind microdit-bench's MFU, checked against PyTorch's FLOP counter on
// the official XL_2 step (73.4 TFLOP at batch 256, mask 0.75, of which the official MoE's one-hot
// routing products are not useful work).
#include <gtest/gtest.h>

#include "microdit/model/flops.h"
#include "microdit/model/block_plan.h"
#include "microdit/model/masking.h"

namespace microdit::model {
namespace {

// The official FeedForwardECMoe gathers and scatters with one-hot einsums: two (E*K x T) by
// (T x D) products per MoE layer and sample, forward; three times that for a training step.
double one_hot_routing_flops(const DiTConfig& c, int64_t batch, double mask_ratio) {
  double flops = 0;
  auto add = [&](const std::vector<nn::DiTBlockOptions>& blocks, double tokens) {
    for (const auto& o : blocks) {
      if (!o.moe) continue;
      const auto k = static_cast<int64_t>(o.expert_capacity * tokens / o.num_experts);
      flops += 2.0 * 2.0 * batch * o.num_experts * k * tokens * o.dim;
    }
  };
  add(mixer_blocks(c), c.num_patches());
  add(backbone_blocks(c), kept_tokens(c.num_patches(), mask_ratio));
  return 3.0 * flops;
}

TEST(Flops, XL2MaskedStepMatchesTorchFlopCounter) {
  const auto config = MicroDiT_XL_2();
  const double ours = training_step_flops(config, {256, 0.75});
  const double official_counted = ours + one_hot_routing_flops(config, 256, 0.75);
  EXPECT_NEAR(official_counted / 1e12, 73.4, 73.4 * 0.01) << "useful " << ours / 1e12;
  RecordProperty("useful_tflop", std::to_string(ours / 1e12));
  RecordProperty("counted_tflop", std::to_string(official_counted / 1e12));
  EXPECT_GT(ours / 1e12, 70.0);
}

TEST(Flops, ScalesWithBatchAndMask) {
  const auto config = MicroDiT_Tiny_2();
  const double one = training_step_flops(config, {1, 0.75});
  EXPECT_NEAR(training_step_flops(config, {8, 0.75}), 8 * one, 1e-6 * 8 * one);
  // Unmasked: the backbone sees 4x the tokens, so the step costs more (but less than 4x: the
  // mixer and caption work do not change).
  const double unmasked = training_step_flops(config, {1, 0.0});
  EXPECT_GT(unmasked, 2.0 * one);
  EXPECT_LT(unmasked, 4.0 * one);
}

}  // namespace
}  // namespace microdit::model
