// Tests for the recipe's AdamW: one group with weight decay on every parameter, the optional MoE
// expert learning-rate scale, and set_learning_rate.
#include <gtest/gtest.h>

#include <stdexcept>

#include "microdit/train/optimizer.h"

namespace microdit::train {
namespace {

using NamedParams = std::vector<std::pair<std::string, at::Tensor>>;

// Names as in the model: MoE expert weights are 3-D parameters "<block>.mlp.w1/w2"; the dense
// FeedForward's are Linear weights "<block>.mlp.w1.weight".
NamedParams model_like_params() {
  auto p = [](at::IntArrayRef shape) { return at::randn(shape).requires_grad_(); };
  return {{"x_embedder.proj.bias", p({8})},         // (D)
          {"blocks.0.norm1.weight", p({8})},        // (D)
          {"blocks.0.mlp.w1", p({4, 8, 16})},       // (E, D, F) expert weight
          {"blocks.0.mlp.w2", p({4, 16, 8})},       // (E, F, D) expert weight
          {"blocks.0.mlp.gate.weight", p({4, 8})},  // (E, D) router, not an expert weight
          {"blocks.1.mlp.w1.weight", p({16, 8})},   // dense FeedForward (F, D)
          {"blocks.1.mlp.w2.weight", p({16, 8})},   // dense FeedForward (F, D)
          {"final_layer.linear.weight", p({4, 8})}};
}

bool same_tensor(const at::Tensor& a, const at::Tensor& b) { return a.is_same(b); }

TEST(Optimizer, ExpertWeightsAreRecognisedByNameAndRank) {
  EXPECT_TRUE(is_moe_expert_weight("blocks.3.mlp.w1", at::zeros({2, 3, 4})));
  EXPECT_TRUE(is_moe_expert_weight("mixer.blocks.0.mlp.w2", at::zeros({2, 3, 4})));
  EXPECT_TRUE(is_moe_expert_weight("mlp.w1", at::zeros({2, 3, 4})));
  EXPECT_FALSE(is_moe_expert_weight("blocks.3.mlp.w1.weight", at::zeros({3, 4})));
  EXPECT_FALSE(is_moe_expert_weight("blocks.3.mlp.w1", at::zeros({3, 4})));
  EXPECT_FALSE(is_moe_expert_weight("blocks.3.mlp.w3", at::zeros({2, 3, 4})));
  EXPECT_FALSE(is_moe_expert_weight("blocks.3.xmlp.w1", at::zeros({2, 3, 4})));
}

TEST(Optimizer, ScaleOneGivesOneGroupWithEveryParameter) {
  const auto params = model_like_params();
  AdamWSettings settings;
  settings.lr = 2.4e-4;
  auto adamw = make_adamw(params, settings);
  ASSERT_EQ(adamw->param_groups().size(), 1u);
  const auto& group = adamw->param_groups()[0];
  ASSERT_EQ(group.params().size(), params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(same_tensor(group.params()[i], params[i].second)) << params[i].first;
  }
  const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
  EXPECT_EQ(options.lr(), 2.4e-4);
  EXPECT_EQ(options.weight_decay(), 0.1);
  EXPECT_EQ(options.eps(), 1e-8);
  EXPECT_EQ(std::get<0>(options.betas()), 0.9);
  EXPECT_EQ(std::get<1>(options.betas()), 0.999);
  EXPECT_FALSE(options.amsgrad());
  EXPECT_EQ(lr_scale(*adamw, 0), 1.0);
}

TEST(Optimizer, HalfScaleSplitsTheExpertWeightsIntoASecondGroup) {
  const auto params = model_like_params();
  AdamWSettings settings;
  settings.lr = 8e-5;
  settings.moe_lr_scale = 0.5;
  auto adamw = make_adamw(params, settings);
  ASSERT_EQ(adamw->param_groups().size(), 2u);
  const auto& base = adamw->param_groups()[0];
  const auto& experts = adamw->param_groups()[1];
  ASSERT_EQ(base.params().size(), params.size() - 2);
  ASSERT_EQ(experts.params().size(), 2u);
  EXPECT_TRUE(same_tensor(experts.params()[0], params[2].second));
  EXPECT_TRUE(same_tensor(experts.params()[1], params[3].second));
  EXPECT_DOUBLE_EQ(base.options().get_lr(), 8e-5);
  EXPECT_DOUBLE_EQ(experts.options().get_lr(), 4e-5);
  EXPECT_EQ(static_cast<const torch::optim::AdamWOptions&>(experts.options()).weight_decay(), 0.1);
  EXPECT_EQ(lr_scale(*adamw, 0), 1.0);
  EXPECT_EQ(lr_scale(*adamw, 1), 0.5);
}

TEST(Optimizer, ScaleWithoutExpertWeightsKeepsOneGroup) {
  NamedParams dense{{"proj.weight", at::randn({3, 3}).requires_grad_()}};
  AdamWSettings settings;
  settings.moe_lr_scale = 0.5;
  EXPECT_EQ(make_adamw(dense, settings)->param_groups().size(), 1u);
}

TEST(Optimizer, SetLearningRateAppliesTheGroupScalesEvenThroughZero) {
  AdamWSettings settings;
  settings.moe_lr_scale = 0.5;
  auto adamw = make_adamw(model_like_params(), settings);
  set_learning_rate(*adamw, 0.0);  // first warm-up step: a ratio of lrs would be lost here
  EXPECT_EQ(adamw->param_groups()[0].options().get_lr(), 0.0);
  EXPECT_EQ(adamw->param_groups()[1].options().get_lr(), 0.0);
  set_learning_rate(*adamw, 1e-3);
  EXPECT_DOUBLE_EQ(adamw->param_groups()[0].options().get_lr(), 1e-3);
  EXPECT_DOUBLE_EQ(adamw->param_groups()[1].options().get_lr(), 5e-4);
}

TEST(Optimizer, SetLearningRateOnAPlainOptimizerUsesScaleOne) {
  torch::optim::AdamW plain(std::vector<at::Tensor>{at::zeros({2}).requires_grad_()});
  set_learning_rate(plain, 3e-4);
  EXPECT_DOUBLE_EQ(plain.param_groups()[0].options().get_lr(), 3e-4);
}

// With a zero gradient Adam's update is 0 / (0 + eps) = 0, leaving only the decoupled decay:
// p <- p * (1 - lr * wd), for biases and norm weights as for everything else.
TEST(Optimizer, WeightDecayShrinksEveryParameterIncludingBiasesAndNorms) {
  auto params = model_like_params();
  AdamWSettings settings;
  settings.lr = 0.01;
  settings.weight_decay = 0.1;
  settings.moe_lr_scale = 0.5;
  std::vector<at::Tensor> before;
  for (auto& [name, p] : params) {
    before.push_back(p.detach().clone());
    p.mutable_grad() = at::zeros_like(p);
  }
  auto adamw = make_adamw(params, settings);
  adamw->step();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double lr = is_moe_expert_weight(params[i].first, params[i].second) ? 0.005 : 0.01;
    EXPECT_TRUE(at::allclose(params[i].second.detach(), before[i] * (1 - lr * 0.1), 1e-6, 0))
        << params[i].first;
  }
}

// First step by hand: m_hat = g, v_hat = g^2, so p <- p (1 - lr wd) - lr g / (|g| + eps).
TEST(Optimizer, FirstStepMatchesTheAdamWFormula) {
  auto p = at::tensor({1.0, -2.0, 0.5}, at::kDouble).requires_grad_();
  const auto g = at::tensor({0.3, 0.2, -4.0}, at::kDouble);
  p.mutable_grad() = g.clone();
  AdamWSettings settings;
  settings.lr = 0.1;
  settings.weight_decay = 0.1;
  auto adamw = make_adamw({{"w", p}}, settings);
  adamw->step();
  const auto expected =
      at::tensor({1.0, -2.0, 0.5}, at::kDouble) * (1 - 0.1 * 0.1) - 0.1 * g / (g.abs() + 1e-8);
  EXPECT_TRUE(at::allclose(p.detach(), expected, 1e-12, 1e-12)) << p << expected;
}

TEST(Optimizer, RejectsAnEmptyParameterList) {
  EXPECT_THROW(make_adamw({}, AdamWSettings{}), std::invalid_argument);
}

// The fused kernel computes the same AdamW update as LibTorch's per-parameter loop.
TEST(Optimizer, FusedStepMatchesTheUnfusedOne) {
  at::manual_seed(3);
  auto w = at::randn({5, 7});
  auto b = at::randn({7});
  auto run = [&](bool fused) {
    auto pw = w.clone().requires_grad_(true), pb = b.clone().requires_grad_(true);
    AdamWSettings s;
    s.lr = 1e-2;
    s.fused = fused;
    auto opt = make_adamw({{"w", pw}, {"b", pb}}, s);
    for (int i = 0; i < 3; ++i) {
      opt->zero_grad();
      ((pw.sum(0) * pb).pow(2).sum() + pb.sum()).backward();
      opt->step();
    }
    return std::make_pair(pw.detach(), pb.detach());
  };
  auto [w1, b1] = run(false);
  auto [w2, b2] = run(true);
  EXPECT_TRUE(at::allclose(w1, w2, 1e-6, 1e-7));
  EXPECT_TRUE(at::allclose(b1, b2, 1e-6, 1e-7));
  EXPECT_FALSE(at::equal(w1, w));
}

// The fused step keeps its step count on the device and advances it there; a state whose count
// jumps (a loaded checkpoint) must still give the unfused update for that count.
TEST(Optimizer, FusedStepFollowsAStepCountSetInTheState) {
  at::manual_seed(4);
  auto w = at::randn({6, 3});
  auto run = [&](bool fused) {
    auto p = w.clone().requires_grad_(true);
    AdamWSettings s;
    s.lr = 1e-2;
    s.fused = fused;
    auto opt = make_adamw({{"w", p}}, s);
    auto step = [&] {
      opt->zero_grad();
      (p * p).sum().backward();
      opt->step();
    };
    step();
    step();
    for (auto& [key, state] : opt->state())
      static_cast<torch::optim::AdamWParamState&>(*state).step(10);
    step();  // the update of step 11: bias corrections differ clearly from step 3's
    return p.detach();
  };
  EXPECT_TRUE(at::allclose(run(true), run(false), 1e-6, 1e-7));
}

// For a captured step: the fused kernel reads each group's learning rate from the device, and
// set_learning_rate writes it there; a changing schedule gives the updates of plain numbers.
TEST(Optimizer, LearningRatesOnTheDeviceFollowTheSchedule) {
  at::manual_seed(5);
  auto named = model_like_params();
  auto run = [&](bool on_device) {
    NamedParams copies;
    for (const auto& [name, p] : named)
      copies.emplace_back(name, p.detach().clone().requires_grad_());
    AdamWSettings s;
    s.moe_lr_scale = 0.5;  // two groups
    s.fused = true;
    auto opt = make_adamw(copies, s);
    auto& adamw = dynamic_cast<ScaledAdamW&>(*opt);
    if (on_device) adamw.keep_learning_rates_on_device();
    for (const double lr : {1e-2, 3e-3, 0.0, 2e-2}) {
      set_learning_rate(adamw, lr);
      adamw.zero_grad();
      at::Tensor loss = at::zeros({});
      for (const auto& [name, p] : copies) loss = loss + p.square().sum() * 0.5;
      loss.backward();
      adamw.step();
    }
    return copies;
  };
  const auto numbers = run(false), tensors = run(true);
  for (std::size_t i = 0; i < named.size(); ++i) {
    EXPECT_TRUE(at::equal(numbers[i].second, tensors[i].second)) << numbers[i].first;
    EXPECT_FALSE(at::equal(numbers[i].second, named[i].second)) << numbers[i].first;
  }
}

// After a replay of a captured step, the host step counts (what checkpoints save) advance for
// the parameters the step updated, as if step() had run.
TEST(Optimizer, ReplayedStepAdvancesTheHostStepCounts) {
  auto w = at::randn({3, 2}).requires_grad_(), unused = at::randn({2}).requires_grad_();
  AdamWSettings s;
  s.fused = true;
  auto opt = make_adamw({{"w", w}, {"unused", unused}}, s);
  auto& adamw = dynamic_cast<ScaledAdamW&>(*opt);
  (w * w).sum().backward();
  adamw.step();
  adamw.count_replayed_step();
  adamw.count_replayed_step();
  auto count = [&](const at::Tensor& p) {
    const auto it = adamw.state().find(p.unsafeGetTensorImpl());
    return it == adamw.state().end()
               ? int64_t{-1}
               : static_cast<const torch::optim::AdamWParamState&>(*it->second).step();
  };
  EXPECT_EQ(count(w), 3);
  EXPECT_EQ(count(unused), -1);  // no gradient: no state, as fused_step
}

}  // namespace
}  // namespace microdit::train
