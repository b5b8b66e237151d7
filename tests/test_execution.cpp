// nn/execution: how the model runs is chosen once, when it is built, and kept by its modules: a
// model built fast takes the fused operations in every forward, on any thread, beside a reference
// model that takes none of them.
#include <gtest/gtest.h>

#include <thread>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/model/masking.h"
#include "microdit/model/microdit.h"
#include "microdit/nn/autocast.h"
#include "microdit/nn/execution.h"
#include "test_support.h"

namespace microdit {
namespace {

// The autograd nodes of the fast path's operations (their Function classes).
const std::vector<std::string> kFastOperations{"FusedNormFunction", "NormedSplitFunction",
                                               "GatedResidualFunction", "SiluMulFunction",
                                               "ExpertDispatchFunction", "ExpertCombineFunction",
                                               "GeluBmmFunction"};
// Under autocast the fast path's products also give float32 weight gradients.
const std::vector<std::string> kFastAutocastOperations{"LinearFunction", "WeightBmmFunction"};

// The loss of one masked EDM step of the small model (patch mixer, MoE and dense blocks).
at::Tensor step_loss(model::DiT& dit, bool bf16) {
  at::manual_seed(2);
  const auto& c = dit->config;
  auto x = at::randn({2, c.in_channels, c.input_size, c.input_size});
  auto y = at::randn({2, 1, 77, c.caption_channels});
  const auto mask = model::sample_mask(2, c.num_patches(), 0.5, std::nullopt, at::kCPU);
  nn::AutocastGuard autocast(at::kCPU, at::kBFloat16, bf16);
  return diffusion::edm_loss(dit, x, y, diffusion::sample_loss_noise(x), {}, &mask);
}

std::vector<std::string> operations_in(const at::Tensor& loss,
                                       const std::vector<std::string>& names) {
  std::vector<std::string> found;
  for (const auto& name : names)
    if (test::graph_has(loss, name)) found.push_back(name);
  return found;
}

TEST(Execution, ModeNamesParseAndOthersAreNamed) {
  EXPECT_EQ(nn::parse_execution_mode("reference", "--execution"), nn::ExecutionMode::reference);
  EXPECT_EQ(nn::parse_execution_mode("fast", "--execution"), nn::ExecutionMode::fast);
  EXPECT_EQ(nn::execution_mode_name(nn::ExecutionMode::fast), "fast");
  EXPECT_EQ(nn::execution_mode_name(nn::ExecutionMode::reference), "reference");
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { nn::parse_execution_mode("fused", "optim.execution"); }, "",
      {"optim.execution is 'fused', expected reference or fast"}));
}

// Every module with the choice gets the setting: norms, attentions, blocks, FFNs, MoE, linears.
TEST(Execution, ApplyReachesEveryModuleWithTheChoice) {
  model::DiT dit(test::small_config());
  int64_t with_choice = 0;
  for (const auto& m : dit->modules()) {
    if (const auto* h = dynamic_cast<const nn::HasExecution*>(m.get())) {
      ++with_choice;
      EXPECT_FALSE(h->execution.fast()) << m->name() << ": built reference by default";
    }
  }
  EXPECT_GT(with_choice, 50);
  nn::apply_execution(*dit, {nn::ExecutionMode::fast, /*low_precision_norm=*/true});
  for (const auto& m : dit->modules()) {
    if (const auto* h = dynamic_cast<const nn::HasExecution*>(m.get())) {
      EXPECT_TRUE(h->execution.fast()) << m->name();
      EXPECT_TRUE(h->execution.low_precision_norm) << m->name();
    }
  }
}

// A fast model and a reference model side by side on one thread, and the fast one again on another
// thread: each forward follows its own model's setting.
TEST(Execution, EachModelRunsAsItWasBuiltOnAnyThread) {
  model::DiT fast(test::small_config());
  model::DiT reference(test::small_config());
  nn::apply_execution(*fast, {nn::ExecutionMode::fast});
  EXPECT_EQ(operations_in(step_loss(fast, false), kFastOperations), kFastOperations);
  EXPECT_TRUE(operations_in(step_loss(reference, false), kFastOperations).empty());
  EXPECT_TRUE(operations_in(step_loss(fast, false), kFastAutocastOperations).empty())
      << "without autocast the products are float32 already";
  EXPECT_EQ(operations_in(step_loss(fast, true), kFastAutocastOperations), kFastAutocastOperations);
  EXPECT_TRUE(operations_in(step_loss(reference, true), kFastAutocastOperations).empty());
  std::vector<std::string> on_other_thread;
  std::thread([&] { on_other_thread = operations_in(step_loss(fast, false), kFastOperations); })
      .join();
  EXPECT_EQ(on_other_thread, kFastOperations);
}

}  // namespace
}  // namespace microdit
