// Tests for global-norm gradient clipping before the AdamW step (train/train_step.h): the
// numbers of torch.nn.utils.clip_grad_norm_, and the fused AdamW that divides the gradients
// inside its kernel giving the same step as clipping first.
#include <gtest/gtest.h>

#include "microdit/train/optimizer.h"
#include "microdit/train/train_step.h"

namespace microdit::train {
namespace {

// Gradients (3, 4) and (12): global norm 13. clip_grad_norm_ with max_norm 1 multiplies them by
// 1 / (13 + 1e-6); with max_norm 20 leaves them alone.
TEST(Clipping, ClipsToTheGlobalNormAsClipGradNorm) {
  for (const bool fused : {false, true}) {
    for (const double max_norm : {1.0, 20.0, 0.0}) {
      auto a = at::zeros({2}).requires_grad_(), b = at::zeros({1}).requires_grad_();
      a.mutable_grad() = at::tensor({3.0f, 4.0f});
      b.mutable_grad() = at::tensor({12.0f});
      AdamWSettings s;
      s.fused = fused;
      s.lr = 0;  // the gradients are what is checked
      auto opt = make_adamw({{"a", a}, {"b", b}}, s);
      const auto norm = clip_and_step({a, b}, *opt, max_norm);
      SCOPED_TRACE(::testing::Message() << "fused " << fused << ", max_norm " << max_norm);
      EXPECT_NEAR(norm.item<double>(), 13.0, 1e-6);
      const double factor = max_norm == 1.0 ? 1.0 / (13.0 + 1e-6) : 1.0;
      EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 * factor, 1e-6);
      EXPECT_NEAR(a.grad()[1].item<double>(), 4.0 * factor, 1e-6);
      EXPECT_NEAR(b.grad()[0].item<double>(), 12.0 * factor, 1e-6);
    }
  }
}

TEST(Clipping, DivisorIsTheInverseOfTheClippingFactor) {
  EXPECT_NEAR(clipping_divisor(at::tensor(13.0), 1.0).item<double>(), 13.0 + 1e-6, 1e-5);
  EXPECT_EQ(clipping_divisor(at::tensor(0.5), 1.0).item<double>(), 1.0);
  EXPECT_EQ(clipping_divisor(at::tensor(0.5, at::kDouble), 0.25).scalar_type(), at::kFloat);
}

// Three steps with two parameter groups and gradients well above the clipping norm: the fused
// AdamW dividing inside its kernel gives the weights and moments of the unfused AdamW after
// clipping in place.
void expect_fused_division_gives_clipping_first(at::Device device) {
  at::manual_seed(6);
  const auto w1 = at::randn({4, 8, 16}, device), w2 = at::randn({16, 8}, device);
  auto run = [&](bool fused) {
    auto e = w1.clone().requires_grad_(), d = w2.clone().requires_grad_();
    AdamWSettings s;
    s.lr = 1e-2;
    s.moe_lr_scale = 0.5;  // two groups
    s.fused = fused;
    auto opt = make_adamw({{"blocks.0.mlp.w1", e}, {"blocks.0.attn.qkv.weight", d}}, s);
    for (int i = 0; i < 3; ++i) {
      opt->zero_grad();
      (e.square().sum() * (i + 1) + d.pow(3).sum()).backward();
      clip_and_step({e, d}, *opt, /*max_norm=*/0.25);
    }
    std::vector<at::Tensor> out{e.detach(), d.detach()};
    for (const auto* p : {&e, &d}) {
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(
          *opt->state().at(p->unsafeGetTensorImpl()));
      out.push_back(st.exp_avg());
      out.push_back(st.exp_avg_sq());
    }
    return out;
  };
  const auto plain = run(false), fused = run(true);
  // Within float32 rounding: CUDA's fused kernel rounds the weight decay and the step in another
  // order than the unfused AdamW, a few ulps of a 1e-2 step (1e-9 each) on weights near zero; so
  // each tensor's absolute tolerance is 1e-6 of its largest value (the moments are 1e-8 to 1e-5).
  // The second moments (tensors 3 and 5) get 1e-4: on an H100 (2026-11-27) they differed by up to
  // 8e-6 and 7e-5 of their largest value (1e-7 on the CPU). Without the divisor the weights differ
  // by ~1e-3 and the second moments by the square of the clipping factor.
  for (std::size_t i = 0; i < plain.size(); ++i) {
    const bool second_moment = i == 3 || i == 5;
    const double atol = (second_moment ? 1e-4 : 1e-6) * plain[i].abs().max().item<double>();
    EXPECT_TRUE(at::allclose(fused[i], plain[i], 1e-5, atol))
        << "tensor " << i << ": max abs difference "
        << (fused[i] - plain[i]).abs().max().item<double>();
  }
  EXPECT_FALSE(at::allclose(plain[0], w1, 1e-3, 1e-3));
}

TEST(Clipping, FusedDivisionGivesTheStepOfClippingFirst) {
  expect_fused_division_gives_clipping_first(at::kCPU);
}

// ATen's CUDA kernel reads the divisor from the device and writes the divided gradients back.
TEST(Clipping, FusedDivisionGivesTheStepOfClippingFirst_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  expect_fused_division_gives_clipping_first(at::kCUDA);
}

// The divisor applies to the next step only.
TEST(Clipping, GradientDivisorLastsOneStep) {
  auto run = [](bool divide_first) {
    auto p = at::ones({3}).requires_grad_();
    AdamWSettings s;
    s.fused = true;
    s.lr = 0.1;
    s.weight_decay = 0;
    auto opt = make_adamw({{"p", p}}, s);
    auto& adamw = dynamic_cast<ScaledAdamW&>(*opt);
    p.mutable_grad() = at::full({3}, 2.0f);
    if (divide_first) adamw.divide_next_gradients_by(at::tensor(4.0f));
    adamw.step();
    p.mutable_grad() = at::full({3}, 2.0f);
    adamw.step();
    return std::make_pair(p.detach().clone(), p.grad().clone());
  };
  const auto [divided_then_not, last_grad] = run(true);
  EXPECT_TRUE(at::equal(last_grad, at::full({3}, 2.0f)));  // the second step did not divide
  EXPECT_FALSE(at::allclose(divided_then_not, run(false).first, 1e-6, 1e-9));
}

TEST(Clipping, GradientDivisorNeedsTheFusedAdamWAndOneFloat) {
  auto p = at::ones({3}).requires_grad_();
  AdamWSettings s;
  auto unfused = make_adamw({{"p", p}}, s);
  EXPECT_THROW(dynamic_cast<ScaledAdamW&>(*unfused).divide_next_gradients_by(at::tensor(2.0f)),
               c10::Error);
  s.fused = true;
  auto fused = make_adamw({{"p", p}}, s);
  EXPECT_THROW(dynamic_cast<ScaledAdamW&>(*fused).divide_next_gradients_by(at::tensor(2.0)),
               c10::Error);
}

}  // namespace
}  // namespace microdit::train
