// The fast paths compute the same function: gather-based expert-choice MoE against the official
// one-hot einsum formulation, and bf16 LayerNorms (the official runs' LPLayerNorm) against plain
// autocast. On the CPU with CPU autocast; the *_CUDA cases repeat them on a GPU.
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

void expect_gather_equals_one_hot(at::Device device, bool by_rows = false,
                                  bool fused_combine = false, bool fused_dispatch = false) {
  nn::MoERowDispatchGuard rows(by_rows);
  nn::FusedCombineGuard combine(fused_combine);
  nn::FusedDispatchGuard dispatch(fused_dispatch);
  at::manual_seed(3);
  nn::FeedForwardECMoe moe(8, 2.0, 64, 96, 32);
  moe->to(device);
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
}

TEST(FastPath, GatherMoEEqualsOneHotEinsum) { expect_gather_equals_one_hot(at::kCPU); }

TEST(FastPath, RowDispatchMoEEqualsOneHotEinsum) {
  expect_gather_equals_one_hot(at::kCPU, /*by_rows=*/true);
}

TEST(FastPath, RowDispatchMoEEqualsOneHotEinsum_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_gather_equals_one_hot(at::kCUDA, /*by_rows=*/true);
}

TEST(FastPath, GatherMoEEqualsOneHotEinsum_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_gather_equals_one_hot(at::kCUDA);
}

// nn/expert_combine in place of the plain weighted scatter, after either dispatch.
TEST(FastPath, FusedCombineMoEEqualsOneHotEinsum) {
  expect_gather_equals_one_hot(at::kCPU, /*by_rows=*/false, /*fused_combine=*/true);
  expect_gather_equals_one_hot(at::kCPU, /*by_rows=*/true, /*fused_combine=*/true);
}

TEST(FastPath, FusedCombineMoEEqualsOneHotEinsum_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_gather_equals_one_hot(at::kCUDA, /*by_rows=*/false, /*fused_combine=*/true);
  expect_gather_equals_one_hot(at::kCUDA, /*by_rows=*/true, /*fused_combine=*/true);
}

// nn/expert_dispatch in place of either dispatch, with the plain and the fused combine.
TEST(FastPath, FusedDispatchMoEEqualsOneHotEinsum) {
  for (const bool fused_combine : {false, true}) {
    SCOPED_TRACE(fused_combine ? "fused combine" : "plain combine");
    expect_gather_equals_one_hot(at::kCPU, /*by_rows=*/false, fused_combine,
                                 /*fused_dispatch=*/true);
    expect_gather_equals_one_hot(at::kCPU, /*by_rows=*/true, fused_combine,
                                 /*fused_dispatch=*/true);
  }
}

TEST(FastPath, FusedDispatchMoEEqualsOneHotEinsum_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  for (const bool fused_combine : {false, true}) {
    SCOPED_TRACE(fused_combine ? "fused combine" : "plain combine");
    expect_gather_equals_one_hot(at::kCUDA, /*by_rows=*/true, fused_combine,
                                 /*fused_dispatch=*/true);
  }
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
    nn::LowPrecisionNormGuard low(true);
    EXPECT_TRUE(at::equal(norm(x), plain)) << "no effect outside autocast";
    nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
    const auto out = norm(x);
    EXPECT_EQ(out.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(
        out, at::layer_norm(x.to(at::kBFloat16), {32}, norm->weight.to(at::kBFloat16), {}, 1e-6)));
  }
  nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
  EXPECT_NE(norm(x).scalar_type(), at::kBFloat16) << "plain autocast keeps LayerNorm in float32";
  EXPECT_FALSE(nn::LowPrecisionNormGuard::active());
}

// Gradients of one masked EDM step of a small model, flattened over all parameters.
at::Tensor step_gradients(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                          const diffusion::EDMLossNoise& draws, const model::TokenMask& mask,
                          bool bf16, const nn::ExecutionOptions& options) {
  dit->zero_grad(/*set_to_none=*/true);
  {
    nn::AutocastGuard autocast(x.device().type(), at::kBFloat16, bf16);
    nn::ExecutionGuard execution(options);
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

// The fused LayerNorm + modulation (nn/fused_norm), gated residuals (nn/gated_residual) and MoE
// combine (nn/expert_combine) against the unfused ops, in the whole model: float32 gradients equal
// to rounding, bf16 autocast gradients at cosine >= 0.999.
void expect_fused_gradients_close(at::Device device, nn::ExecutionOptions fused) {
  auto s = small_step(device);
  auto grads = [&](bool bf16, const nn::ExecutionOptions& options) {
    return step_gradients(s.dit, s.x, s.y, s.draws, s.mask, bf16, options);
  };
  const nn::ExecutionOptions plain_options;
  const auto fp32 = grads(false, plain_options), fp32_fused = grads(false, fused);
  EXPECT_LE((fp32_fused - fp32).norm().item<double>() / fp32.norm().item<double>(), 1e-5);
  const auto bf16 = grads(true, plain_options), bf16_fused = grads(true, fused);
  EXPECT_GE(cosine(bf16_fused, bf16), 0.999);
  EXPECT_GE(cosine(bf16_fused, fp32), 0.99);
  testing::Test::RecordProperty("cosine_fused_plain_bf16",
                                std::to_string(cosine(bf16_fused, bf16)));
}

constexpr nn::ExecutionOptions kFusedNorm{.fused_norm = true};
constexpr nn::ExecutionOptions kFusedResidual{.fused_residual = true};
constexpr nn::ExecutionOptions kFusedCombine{.fused_combine = true};
constexpr nn::ExecutionOptions kFusedDispatch{.fused_dispatch = true};

TEST(FastPath, FusedNormGradientsMatchUnfused) {
  expect_fused_gradients_close(at::kCPU, kFusedNorm);
}

TEST(FastPath, FusedNormGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kFusedNorm);
}

TEST(FastPath, FusedResidualGradientsMatchUnfused) {
  expect_fused_gradients_close(at::kCPU, kFusedResidual);
}

TEST(FastPath, FusedResidualGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kFusedResidual);
}

TEST(FastPath, FusedCombineGradientsMatchUnfused) {
  expect_fused_gradients_close(at::kCPU, kFusedCombine);
}

TEST(FastPath, FusedCombineGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kFusedCombine);
}

TEST(FastPath, FusedDispatchGradientsMatchUnfused) {
  expect_fused_gradients_close(at::kCPU, kFusedDispatch);
}

TEST(FastPath, FusedDispatchGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kFusedDispatch);
}

constexpr nn::ExecutionOptions kFoldResidual{.fused_norm = true, .fold_residual_grad = true};

TEST(FastPath, FoldedResidualGradientsMatchUnfused) {
  expect_fused_gradients_close(at::kCPU, kFoldResidual);
}

TEST(FastPath, FoldedResidualGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kFoldResidual);
}

// The fold reaches every block: in bf16 it rounds the residual stream's gradient once where the
// fused norm alone rounds twice, so the gradients move, by rounding only.
TEST(FastPath, FoldReachesTheBlocks) {
  auto s = small_step(at::kCPU);
  const auto fused = step_gradients(s.dit, s.x, s.y, s.draws, s.mask, true, kFusedNorm);
  const auto folded = step_gradients(s.dit, s.x, s.y, s.draws, s.mask, true, kFoldResidual);
  EXPECT_FALSE(at::equal(fused, folded));
  EXPECT_GE(cosine(folded, fused), 0.999);
}

constexpr nn::ExecutionOptions kSplitQkNorm{.fused_norm = true, .split_qk_norm = true};

TEST(FastPath, SplitQkNormGradientsMatchUnfused) {
  expect_fused_gradients_close(at::kCPU, kSplitQkNorm);
}

TEST(FastPath, SplitQkNormGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kSplitQkNorm);
}

constexpr nn::ExecutionOptions kMergedSwiGLU{.merged_swiglu = true};

TEST(FastPath, MergedSwiGLUGradientsMatchPlain) {
  expect_fused_gradients_close(at::kCPU, kMergedSwiGLU);
}

TEST(FastPath, MergedSwiGLUGradientsMatchPlain_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kMergedSwiGLU);
}

// The one-kernel norm backward only differs on CUDA (elsewhere the composite runs either way).
TEST(FastPath, OnePassNormGradGradientsMatchUnfused_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, {.fused_norm = true, .one_pass_norm_grad = true});
}

constexpr nn::ExecutionOptions kFp32WeightGrads{.fp32_weight_grads = true};

TEST(FastPath, Fp32WeightGradientsMatchPlain) {
  expect_fused_gradients_close(at::kCPU, kFp32WeightGrads);
}

TEST(FastPath, Fp32WeightGradientsMatchPlain_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_fused_gradients_close(at::kCUDA, kFp32WeightGrads);
}

// Under bf16 autocast the plain path's weight gradients are bf16 values (products rounded, then
// converted); with the option every linear and expert weight's gradient keeps float32 values.
TEST(FastPath, Fp32WeightGradientsReachEveryProduct) {
  auto s = small_step(at::kCPU);
  for (const bool on : {false, true}) {
    step_gradients(s.dit, s.x, s.y, s.draws, s.mask, true, {.fp32_weight_grads = on});
    int64_t weights = 0;
    for (const auto& item : s.dit->named_parameters()) {
      const auto& grad = item.value().grad();
      if (item.value().dim() < 2 || item.value().dim() > 3 || !grad.defined()) continue;
      ++weights;
      const bool bf16_values = at::equal(grad, grad.to(at::kBFloat16).to(grad.scalar_type()));
      EXPECT_EQ(bf16_values, !on) << item.key() << (on ? " with" : " without") << " the option";
    }
    EXPECT_GT(weights, 20);
  }
}

void expect_bf16_norm_gradients_close(at::Device device) {
  auto [dit, x, y, draws, mask] = small_step(device);
  const nn::ExecutionOptions plain_autocast{.low_precision_norm = false};
  const auto fp32 = step_gradients(dit, x, y, draws, mask, false, plain_autocast);
  const auto plain = step_gradients(dit, x, y, draws, mask, true, plain_autocast);
  const auto fast = step_gradients(dit, x, y, draws, mask, true, {.low_precision_norm = true});
  EXPECT_GE(cosine(fast, plain), 0.999);
  EXPECT_GE(cosine(fast, fp32), 0.99);
  testing::Test::RecordProperty("cosine_fast_plain", std::to_string(cosine(fast, plain)));
  testing::Test::RecordProperty("cosine_fast_fp32", std::to_string(cosine(fast, fp32)));
  testing::Test::RecordProperty("cosine_plain_fp32", std::to_string(cosine(plain, fp32)));
}

TEST(FastPath, Bf16NormGradientsMatchPlainAutocast) { expect_bf16_norm_gradients_close(at::kCPU); }

TEST(FastPath, Bf16NormGradientsMatchPlainAutocast_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  expect_bf16_norm_gradients_close(at::kCUDA);
}

}  // namespace
}  // namespace microdit
