// train/train_step: the one training step of microdit-train and microdit-bench. Split into
// micro-batches it is the step of one batch; its loss check runs before the weights change; as a
// CUDA graph its replays train as the same eager steps; what a graph cannot replay is refused.
#include <gtest/gtest.h>

#include "microdit/train/optimizer.h"
#include "microdit/train/step_graph.h"
#include "microdit/train/train_step.h"
#include "test_support.h"

namespace microdit {
namespace {

at::Tensor flat_parameters(model::DiT& dit) {
  std::vector<at::Tensor> flat;
  for (const auto& p : dit->parameters()) flat.push_back(p.detach().flatten().clone());
  return at::cat(flat);
}

double relative_distance(const at::Tensor& a, const at::Tensor& b) {
  return ((b - a).norm() / a.norm()).item<double>();
}

TEST(TrainStep, RefusesAGraphItCannotReplay) {
  auto s = test::train_step_setup(at::kCPU, /*fused_adamw=*/true);
  s.options.cuda_graph = true;
  // A CPU build has no graphs; a CUDA build needs a CUDA device: either way the error says CUDA.
  EXPECT_TRUE(test::throws_with<c10::Error>([&] { s.make_step(); }, "", {"CUDA"}));
  if (!at::hasCUDA() || !train::cuda_graphs_built()) return;
  auto unfused = test::train_step_setup(at::kCUDA, /*fused_adamw=*/false);
  unfused.options.cuda_graph = true;
  EXPECT_TRUE(test::throws_with<c10::Error>([&] { unfused.make_step(); }, "",
                                            {"needs the fused AdamW"}));
}

// Two micro-batches of 2 against one of 4, three steps: the same losses and weights to float32
// rounding (each sample's loss counts 1 / batch, its draws come with it).
TEST(TrainStep, MicroBatchesGiveTheStepOfOneBatch) {
  auto run = [](int64_t micro_batches) {
    auto s = test::train_step_setup(at::kCPU, /*fused_adamw=*/false);
    s.options.micro_batches = micro_batches;
    s.options.clip_norm = 0.25;
    auto step = s.make_step();
    std::vector<double> losses;
    for (int64_t t = 0; t < 3; ++t) {
      const int64_t size = 4 / micro_batches;
      auto r = step->run([&](int64_t m) { return s.input(t, m * size, size); });
      losses.push_back(r.loss.item<double>());
    }
    return std::make_pair(losses, flat_parameters(s.dit));
  };
  const auto [one_losses, one] = run(1);
  const auto [two_losses, two] = run(2);
  for (std::size_t t = 0; t < one_losses.size(); ++t)
    EXPECT_NEAR(two_losses[t], one_losses[t], 1e-5 * std::abs(one_losses[t])) << "step " << t;
  EXPECT_LE(relative_distance(one, two), 1e-5);
  auto untrained = test::train_step_setup(at::kCPU, /*fused_adamw=*/false);
  const auto fresh = flat_parameters(untrained.dit);
  EXPECT_GT(relative_distance(fresh, one), 1e-4);  // the steps trained
}

// The trainer's non-finite loss check: it sees the step's loss, and throwing from it leaves the
// weights as they were.
TEST(TrainStep, LossCheckRunsBeforeTheWeightsChange) {
  auto s = test::train_step_setup(at::kCPU, /*fused_adamw=*/false);
  auto step = s.make_step();
  const auto before = flat_parameters(s.dit);
  double seen = 0;
  EXPECT_THROW(step->run([&](int64_t) { return s.input(0); },
                         [&](const at::Tensor& loss) {
                           seen = loss.item<double>();
                           throw std::runtime_error("stop");
                         }),
               std::runtime_error);
  EXPECT_TRUE(at::equal(flat_parameters(s.dit), before));
  const auto r = step->run([&](int64_t) { return s.input(0); });
  EXPECT_EQ(r.loss.item<double>(), seen);
  EXPECT_FALSE(at::equal(flat_parameters(s.dit), before));
}

// Five graphed steps (two warm-ups, the capture, two replays) against five eager steps on the same
// inputs: the same weights and the same last loss, to the rounding of atomic sums.
TEST(TrainStep, GraphedStepsTrainAsEagerSteps_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!train::cuda_graphs_built()) GTEST_SKIP() << "this build has no CUDA";
  test::NoTF32 no_tf32;
  auto run = [](bool graphed) {
    auto s = test::train_step_setup(at::kCUDA, /*fused_adamw=*/true);
    s.options.cuda_graph = graphed;
    s.options.clip_norm = 0.25;
    auto step = s.make_step();
    at::Tensor loss;
    for (int64_t t = 0; t < 5; ++t) {
      loss = step->run([&](int64_t) { return s.input(t); }).loss.clone();
    }
    return std::make_pair(loss.item<double>(), flat_parameters(s.dit));
  };
  const auto [eager_loss, eager] = run(false);
  const auto [graphed_loss, graphed] = run(true);
  // Atomic sums (the MoE's scatter_add) may order differently between the runs, so the weights
  // are compared as a whole.
  EXPECT_NEAR(graphed_loss, eager_loss, 1e-4 * std::abs(eager_loss));
  EXPECT_LE(relative_distance(eager, graphed), 1e-4);
}

}  // namespace
}  // namespace microdit
