// nn/activation_recompute: the FFN activations recomputed in backward give exactly the plain
// ops' outputs and gradients, alone, under autocast (the expert weights cast to bfloat16 and
// their gradients back), and in a whole training step's gradients; on CUDA silu_mul's kernels and
// gelu_bmm's backward kernel stay within a rounding of the plain ops and round where they round.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/model/masking.h"
#include "microdit/model/microdit.h"
#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/autocast.h"
#include "microdit/nn/fused_kernels.h"
#include "test_support.h"

namespace microdit {
namespace {

void expect_same(const std::vector<at::Tensor>& ours, const std::vector<at::Tensor>& ref) {
  ASSERT_EQ(ours.size(), ref.size());
  for (std::size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(ours[i].scalar_type(), ref[i].scalar_type()) << "tensor " << i;
    EXPECT_TRUE(at::equal(ours[i], ref[i]))
        << "tensor " << i << " differs by " << (ours[i] - ref[i]).abs().max().item<double>();
  }
}

using test::output_and_grads;

TEST(ActivationRecompute, SiluMulEqualsThePlainOps) {
  at::manual_seed(1);
  auto a = at::randn({4, 7, 48}).requires_grad_();
  auto b = at::randn({4, 7, 48}).requires_grad_();
  auto g = at::randn({4, 7, 48});
  expect_same(output_and_grads(nn::silu_mul(a, b), {a, b}, g),
              output_and_grads(at::silu(a) * b, {a, b}, g));
}

TEST(ActivationRecompute, GeluBmmEqualsThePlainOpsAlsoUnderAutocast) {
  at::manual_seed(2);
  auto x = at::randn({3, 10, 16}).requires_grad_();
  auto w1 = at::randn({3, 16, 24}).requires_grad_();  // float32 parameters
  auto w2 = at::randn({3, 24, 16}).requires_grad_();
  for (const bool autocast : {false, true}) {
    SCOPED_TRACE(autocast ? "bf16 autocast" : "float32");
    nn::AutocastGuard guard(at::kCPU, at::kBFloat16, autocast);
    auto u = at::bmm(x, w1);
    auto ours = nn::gelu_bmm(u, w2);
    auto ref = at::bmm(at::gelu(u), w2);
    EXPECT_EQ(ours.scalar_type(), autocast ? at::kBFloat16 : at::kFloat);
    auto g = at::randn_like(ref);
    auto ours_all = output_and_grads(ours, {x, w1, w2}, g);
    expect_same(ours_all, output_and_grads(ref, {x, w1, w2}, g));
    EXPECT_EQ(ours_all[3].scalar_type(), at::kFloat) << "the weight's gradient in its dtype";
  }
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        nn::gelu_bmm(at::randn({3, 4, 5}), w2);
      },
      "", {"gelu_bmm: expects u (E,M,F) and w (E,F,D)"}));
}

// Gradients of one masked EDM step of the small model (MoE and dense FFNs, patch mixer).
at::Tensor step_gradients(model::DiT& dit, bool recompute, const at::Tensor& x, const at::Tensor& y,
                          const diffusion::EDMLossNoise& draws, const model::TokenMask& mask) {
  dit->zero_grad(/*set_to_none=*/true);
  {
    nn::RecomputeActivationsGuard guard(recompute);
    diffusion::edm_loss(dit, x, y, draws, {}, &mask).backward();
  }
  std::vector<at::Tensor> flat;
  for (const auto& p : dit->parameters())
    if (p.grad().defined()) flat.push_back(p.grad().flatten());
  return at::cat(flat);
}

void expect_step_gradients_equal(at::Device device) {
  at::manual_seed(3);
  model::DiT dit(test::small_config());
  {
    at::NoGradGuard no_grad;  // non-zero output layers: every parameter gets a gradient
    for (auto& p : dit->parameters())
      if (p.abs().max().item<double>() == 0) p.normal_(0, 0.02);
  }
  dit->to(device);
  const auto& c = dit->config;
  auto x = at::randn({4, c.in_channels, c.input_size, c.input_size}, device);
  auto y = at::randn({4, 1, 77, c.caption_channels}, device);
  const auto draws = diffusion::sample_loss_noise(x);
  const auto mask = model::sample_mask(4, c.num_patches(), 0.5, std::nullopt, device);
  const auto plain = step_gradients(dit, false, x, y, draws, mask);
  const auto ours = step_gradients(dit, true, x, y, draws, mask);
  EXPECT_EQ(ours.numel(), plain.numel());
  EXPECT_LE((ours - plain).norm().item<double>() / plain.norm().item<double>(), 1e-6);
  testing::Test::RecordProperty("bitwise_equal", at::equal(ours, plain) ? "yes" : "no");
}

TEST(ActivationRecompute, TrainingStepGradientsEqualThePlainOnes) {
  expect_step_gradients_equal(at::kCPU);
}

TEST(ActivationRecompute, TrainingStepGradientsEqualThePlainOnes_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_step_gradients_equal(at::kCUDA);
}

// The CUDA kernels (one pass each way) against the plain ops on the same GPU: each output within
// a rounding, and in bf16 at most 1% of the elements apart (both use CUDA's expf; a missed
// intermediate rounding would put a fifth or more apart).
TEST(ActivationRecompute, SiluMulKernelsMatchThePlainOps_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  at::manual_seed(6);
  for (const auto type : {at::kBFloat16, at::kFloat}) {
    // 64 x 2816: four elements per access; 63 x 2815 (an odd count): one.
    for (const auto& [rows, width] : {std::pair<int64_t, int64_t>{64, 2816}, {63, 2815}}) {
      SCOPED_TRACE(testing::Message() << type << " " << rows << " x " << width);
      const auto options = at::TensorOptions(at::kCUDA).dtype(type);
      auto a = (at::randn({rows, width}, options) * 3).requires_grad_();
      auto b = at::randn({rows, width}, options).requires_grad_();
      auto g = at::randn({rows, width}, options);
      test::expect_within_a_rounding(output_and_grads(nn::silu_mul(a, b), {a, b}, g),
                                     output_and_grads(at::silu(a) * b, {a, b}, g), type);
    }
  }
}

// gelu_bmm's backward kernel (gelu(u) recomputed and its gradient in one pass) against the plain
// ops on the same GPU: the output is the plain product (forward has no kernel), u's and w's
// gradients within a rounding, and in bf16 at most 1% of the elements apart (both run the same
// formulas with CUDA's erff and expf; a missed rounding would put a fifth or more apart).
TEST(ActivationRecompute, GeluBmmKernelMatchesThePlainOps_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  test::NoTF32 no_tf32;
  at::manual_seed(7);
  for (const auto type : {at::kBFloat16, at::kFloat}) {
    // Hidden width 96: four elements per access; 3 x 5 x 33 (an odd count): one.
    for (const auto& [rows, hidden] : {std::pair<int64_t, int64_t>{40, 96}, {5, 33}}) {
      SCOPED_TRACE(testing::Message() << type << " " << rows << " x " << hidden);
      const auto options = at::TensorOptions(at::kCUDA).dtype(type);
      auto u = (at::randn({3, rows, hidden}, options) * 3).requires_grad_();
      auto w = (at::randn({3, hidden, 24}, options) * 0.1).requires_grad_();
      auto g = at::randn({3, rows, 24}, options);
      test::expect_within_a_rounding(output_and_grads(nn::gelu_bmm(u, w), {u, w}, g),
                                     output_and_grads(at::bmm(at::gelu(u), w), {u, w}, g), type);
    }
  }
}

}  // namespace
}  // namespace microdit
