// train/captured_step: the training step captured once as a CUDA graph. Its replays must train
// as the same number of eager steps do (the same random draws, AdamW's step counts advancing on
// the device); without CUDA, or with an optimizer a graph cannot replay, it refuses clearly.
#include <gtest/gtest.h>

#include "microdit/train/captured_step.h"
#include "microdit/train/optimizer.h"
#include "test_support.h"

namespace microdit {
namespace {

TEST(CapturedStep, RefusesWhatAGraphCannotReplay) {
  auto s = test::train_step_setup(at::kCPU, /*fused_adamw=*/true);
  // A CPU build has no graphs; a CUDA build needs CUDA inputs: either way the error says CUDA.
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] { train::CapturedStep step(s.dit, *s.optimizer, s.x0, s.y, s.options); }, "", {"CUDA"}));
  if (!at::hasCUDA()) return;
  auto unfused = test::train_step_setup(at::kCUDA, /*fused_adamw=*/false);
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        train::CapturedStep step(unfused.dit, *unfused.optimizer, unfused.x0, unfused.y,
                                 unfused.options);
      },
      "", {"needs the fused AdamW"}));
}

// One warm-up step and three replays against four eager steps from the same seed: the same
// weights and the same last loss, to the rounding of atomic sums.
TEST(CapturedStep, ReplaysTrainAsEagerSteps_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!train::cuda_graphs_built()) GTEST_SKIP() << "this build has no CUDA";
  test::NoTF32 no_tf32;
  auto eager = test::train_step_setup(at::kCUDA, /*fused_adamw=*/true);
  at::manual_seed(11);
  at::Tensor eager_loss;
  for (int i = 0; i < 4; ++i)
    eager_loss =
        train::train_step(eager.dit, *eager.optimizer, eager.x0, eager.y, eager.options).loss;

  auto graphed = test::train_step_setup(at::kCUDA, /*fused_adamw=*/true);
  at::manual_seed(11);
  train::CapturedStep captured(graphed.dit, *graphed.optimizer, graphed.x0, graphed.y,
                               graphed.options, /*warmup=*/1);
  at::Tensor graphed_loss;
  for (int i = 0; i < 3; ++i) graphed_loss = captured.replay().loss;

  // Atomic sums (the MoE's scatter_add) may order differently between the runs, so the weights
  // are compared as a whole. Eager runs of this setup that repeat the random draws, or keep
  // AdamW's step count, end 2e-2 and 2.4e-3 apart (relative, measured on the CPU).
  EXPECT_NEAR(graphed_loss.item<double>(), eager_loss.item<double>(),
              1e-4 * std::abs(eager_loss.item<double>()));
  std::vector<at::Tensor> eager_flat, graphed_flat;
  auto graphed_params = graphed.dit->named_parameters();
  for (const auto& item : eager.dit->named_parameters()) {
    eager_flat.push_back(item.value().detach().flatten());
    graphed_flat.push_back(graphed_params[item.key()].detach().flatten());
  }
  const auto a = at::cat(eager_flat), b = at::cat(graphed_flat);
  EXPECT_LE(((b - a).norm() / a.norm()).item<double>(), 1e-4);
}

}  // namespace
}  // namespace microdit
