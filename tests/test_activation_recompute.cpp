// nn/activation_recompute: the FFN activations recomputed in backward give exactly the plain
// ops' outputs and gradients, alone, under autocast (the expert weights cast to bfloat16 and
// their gradients back), and in the SwiGLU FFN built fast; on CUDA silu_mul's kernels and
// gelu_bmm's backward kernel stay within a rounding of the plain ops and round where they round.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/autocast.h"
#include "microdit/nn/feed_forward.h"
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
    auto ours = nn::gelu_bmm(u, w2, /*fp32_weight_grad=*/false);
    auto ref = at::bmm(at::gelu(u), w2);
    EXPECT_EQ(ours.scalar_type(), autocast ? at::kBFloat16 : at::kFloat);
    auto g = at::randn_like(ref);
    auto ours_all = output_and_grads(ours, {x, w1, w2}, g);
    expect_same(ours_all, output_and_grads(ref, {x, w1, w2}, g));
    EXPECT_EQ(ours_all[3].scalar_type(), at::kFloat) << "the weight's gradient in its dtype";
  }
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        nn::gelu_bmm(at::randn({3, 4, 5}), w2, false);
      },
      "", {"gelu_bmm: expects u (E,M,F) and w (E,F,D)"}));
}

// The SwiGLU FFN built fast (silu recomputed) gives the reference module's output and gradients.
void expect_feed_forward_equal(at::Device device) {
  at::manual_seed(3);
  nn::FeedForward ffn(48, 96, 16, /*use_bias=*/false);
  ffn->to(device);
  auto x = at::randn({4, 7, 48}, device).requires_grad_();
  const auto g = at::randn({4, 7, 48}, device);
  auto run = [&] {
    return output_and_grads(ffn(x), {x, ffn->w1->weight, ffn->w2->weight, ffn->w3->weight}, g);
  };
  const auto plain = run();
  nn::apply_execution(*ffn, {nn::ExecutionMode::fast});
  EXPECT_TRUE(test::graph_has(ffn(x), "SiluMul"));
  const auto ours = run();
  for (std::size_t i = 0; i < ours.size(); ++i)
    EXPECT_LE(test::max_relative(ours[i], plain[i]), device.is_cuda() ? 1e-6 : 0.0) << i;
}

TEST(ActivationRecompute, FeedForwardBuiltFastEqualsTheReference) {
  expect_feed_forward_equal(at::kCPU);
}

TEST(ActivationRecompute, FeedForwardBuiltFastEqualsTheReference_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_feed_forward_equal(at::kCUDA);
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
      test::expect_within_a_rounding(output_and_grads(nn::gelu_bmm(u, w, false), {u, w}, g),
                                     output_and_grads(at::bmm(at::gelu(u), w), {u, w}, g), type);
    }
  }
}

}  // namespace
}  // namespace microdit
