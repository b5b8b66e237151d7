// The model built fast (nn::apply_execution) computes the reference's function: the expert-choice
// MoE of either mode against the official one-hot einsum formulation, a whole training step's
// gradients fast against reference, and bf16 LayerNorms (the official runs' LPLayerNorm) against
// plain autocast. On the CPU with CPU autocast (the fused operations' composite forms); the *_CUDA
// cases repeat them on a GPU (their kernels, where built).
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/model/masking.h"
#include "microdit/model/microdit.h"
#include "microdit/nn/autocast.h"
#include "microdit/nn/execution.h"
#include "microdit/nn/expert_choice_moe.h"
#include "microdit/nn/norm.h"
#include "test_support.h"

namespace microdit {
namespace {

double relative_error(const at::Tensor& ours, const at::Tensor& ref) {
  return (ours.to(at::kDouble) - ref.to(at::kDouble)).norm().item<double>() /
         ref.to(at::kDouble).norm().item<double>();
}

// The official FeedForwardECMoe.forward: gather and scatter as products with one-hot matrices.
at::Tensor one_hot_moe(nn::FeedForwardECMoe& moe, const at::Tensor& x) {
  const auto routing = moe->route(x);  // (B,E,K) probabilities and token indices
  auto P = at::one_hot(routing.indices, x.size(1)).to(x.scalar_type());  // (B,E,K,T)
  auto x_in = at::einsum("becn,bnd->becd", {P, x});
  auto h = at::gelu(at::einsum("becd,edh->bech", {x_in, moe->w1}));
  h = at::einsum("bech,ehd->becd", {h, moe->w2});
  return at::einsum("becn,becd,bec->bnd", {P, h, routing.probs});
}

void expect_moe_equals_one_hot(at::Device device, nn::ExecutionMode mode) {
  SCOPED_TRACE(std::string(nn::execution_mode_name(mode)));
  at::manual_seed(3);
  nn::FeedForwardECMoe moe(8, 2.0, 64, 96, 32);
  moe->to(device);
  nn::apply_execution(*moe, {mode});
  auto x = at::randn({3, 40, 64}, device).requires_grad_();
  auto ours = moe(x);
  auto g = at::randn_like(ours);
  auto grads = torch::autograd::grad({ours}, {x, moe->w1, moe->w2, moe->gate->weight}, {g});
  auto ref = one_hot_moe(moe, x);
  auto ref_grads = torch::autograd::grad({ref}, {x, moe->w1, moe->w2, moe->gate->weight}, {g});
  EXPECT_LE(relative_error(ours, ref), 1e-6);
  for (std::size_t i = 0; i < grads.size(); ++i) {
    EXPECT_LE(relative_error(grads[i], ref_grads[i]), 1e-6) << "gradient " << i;
  }
  EXPECT_EQ(test::graph_has(ours, "ExpertCombine"), mode == nn::ExecutionMode::fast);
}

TEST(FastPath, MoEEqualsOneHotEinsum) {
  expect_moe_equals_one_hot(at::kCPU, nn::ExecutionMode::reference);
  expect_moe_equals_one_hot(at::kCPU, nn::ExecutionMode::fast);
}

TEST(FastPath, MoEEqualsOneHotEinsum_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_moe_equals_one_hot(at::kCUDA, nn::ExecutionMode::reference);
  expect_moe_equals_one_hot(at::kCUDA, nn::ExecutionMode::fast);
}

TEST(FastPath, LowPrecisionNormRunsInTheAutocastDtype) {
  nn::LayerNorm norm(32, 1e-6);
  {
    at::NoGradGuard no_grad;
    norm->weight.uniform_(0.5, 1.5);
  }
  auto x = at::randn({4, 32});
  const auto plain = norm(x);
  {
    nn::apply_execution(*norm, {.low_precision_norm = true});
    EXPECT_TRUE(at::equal(norm(x), plain)) << "no effect outside autocast";
    nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
    const auto out = norm(x);
    EXPECT_EQ(out.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(
        out, at::layer_norm(x.to(at::kBFloat16), {32}, norm->weight.to(at::kBFloat16), {}, 1e-6)));
  }
  nn::apply_execution(*norm, {.low_precision_norm = false});
  nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
  EXPECT_NE(norm(x).scalar_type(), at::kBFloat16) << "plain autocast keeps LayerNorm in float32";
}

// Gradients of one masked EDM step of a small model built with `execution`, flattened over all
// parameters.
at::Tensor step_gradients(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                          const diffusion::EDMLossNoise& draws, const model::TokenMask& mask,
                          bool bf16, const nn::Execution& execution) {
  nn::apply_execution(*dit, execution);
  dit->zero_grad(/*set_to_none=*/true);
  {
    nn::AutocastGuard autocast(x.device().type(), at::kBFloat16, bf16);
    diffusion::edm_loss(dit, x, y, draws, {}, &mask).backward();
  }
  std::vector<at::Tensor> flat;
  for (const auto& p : dit->parameters()) {
    if (p.grad().defined()) flat.push_back(p.grad().flatten().to(at::kDouble));
  }
  return at::cat(flat);
}

double cosine(const at::Tensor& a, const at::Tensor& b) {
  return (a * b).sum().item<double>() / (a.norm() * b.norm()).item<double>();
}

struct SmallStep {
  model::DiT dit{nullptr};
  at::Tensor x, y;
  diffusion::EDMLossNoise draws;
  model::TokenMask mask;
};

SmallStep small_step(at::Device device) {
  at::manual_seed(5);
  SmallStep s{model::DiT(test::small_config())};
  // Non-zero output layers, so every parameter gets a gradient.
  {
    at::NoGradGuard no_grad;
    for (auto& p : s.dit->parameters()) {
      if (p.abs().max().item<double>() == 0) p.normal_(0, 0.02);
    }
  }
  s.dit->to(device);
  const auto& c = s.dit->config;
  s.x = at::randn({8, c.in_channels, c.input_size, c.input_size}, device);
  s.y = at::randn({8, 1, 77, c.caption_channels}, device);
  s.draws = diffusion::sample_loss_noise(s.x);
  s.mask = model::sample_mask(8, c.num_patches(), 0.5, std::nullopt, device);
  return s;
}

constexpr nn::Execution kReference{nn::ExecutionMode::reference, /*low_precision_norm=*/true};
constexpr nn::Execution kFast{nn::ExecutionMode::fast, /*low_precision_norm=*/true};

// The whole model built fast against the reference: float32 gradients equal to rounding, bf16
// autocast gradients at cosine >= 0.999 with the reference's and >= 0.99 with float32's.
void expect_fast_gradients_close(at::Device device) {
  auto s = small_step(device);
  auto grads = [&](bool bf16, const nn::Execution& execution) {
    return step_gradients(s.dit, s.x, s.y, s.draws, s.mask, bf16, execution);
  };
  const auto fp32 = grads(false, kReference), fp32_fast = grads(false, kFast);
  EXPECT_LE((fp32_fast - fp32).norm().item<double>() / fp32.norm().item<double>(), 1e-5);
  const auto bf16 = grads(true, kReference), bf16_fast = grads(true, kFast);
  EXPECT_GE(cosine(bf16_fast, bf16), 0.999);
  EXPECT_GE(cosine(bf16_fast, fp32), 0.99);
  testing::Test::RecordProperty("cosine_fast_reference_bf16",
                                std::to_string(cosine(bf16_fast, bf16)));
}

TEST(FastPath, GradientsMatchTheReference) { expect_fast_gradients_close(at::kCPU); }

TEST(FastPath, GradientsMatchTheReference_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fast_gradients_close(at::kCUDA);
}

// Under bf16 autocast the reference's weight gradients are bf16 values (products rounded, then
// converted); built fast, every linear and expert weight's gradient keeps float32 values.
TEST(FastPath, Fp32WeightGradientsReachEveryProduct) {
  auto s = small_step(at::kCPU);
  for (const auto& execution : {kReference, kFast}) {
    const bool fast = execution.fast();
    step_gradients(s.dit, s.x, s.y, s.draws, s.mask, true, execution);
    int64_t weights = 0;
    for (const auto& item : s.dit->named_parameters()) {
      const auto& grad = item.value().grad();
      if (item.value().dim() < 2 || item.value().dim() > 3 || !grad.defined()) continue;
      ++weights;
      const bool bf16_values = at::equal(grad, grad.to(at::kBFloat16).to(grad.scalar_type()));
      EXPECT_EQ(bf16_values, !fast) << item.key() << (fast ? " fast" : " reference");
    }
    EXPECT_GT(weights, 20);
  }
}

void expect_bf16_norm_gradients_close(at::Device device) {
  auto [dit, x, y, draws, mask] = small_step(device);
  const nn::Execution plain_autocast{.low_precision_norm = false};
  const auto fp32 = step_gradients(dit, x, y, draws, mask, false, plain_autocast);
  const auto plain = step_gradients(dit, x, y, draws, mask, true, plain_autocast);
  const auto low = step_gradients(dit, x, y, draws, mask, true, {.low_precision_norm = true});
  EXPECT_GE(cosine(low, plain), 0.999);
  EXPECT_GE(cosine(low, fp32), 0.99);
  testing::Test::RecordProperty("cosine_bf16norm_plain", std::to_string(cosine(low, plain)));
  testing::Test::RecordProperty("cosine_bf16norm_fp32", std::to_string(cosine(low, fp32)));
  testing::Test::RecordProperty("cosine_plain_fp32", std::to_string(cosine(plain, fp32)));
}

TEST(FastPath, Bf16NormGradientsMatchPlainAutocast) { expect_bf16_norm_gradients_close(at::kCPU); }

TEST(FastPath, Bf16NormGradientsMatchPlainAutocast_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  expect_bf16_norm_gradients_close(at::kCUDA);
}

}  // namespace
}  // namespace microdit
