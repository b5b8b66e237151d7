// nn/swiglu_projection: the SwiGLU FFN's two input projections as one matrix product give the
// plain ops' output and gradients (equal in float64, within a rounding in bf16 autocast, float32
// weight gradients under the guard), FeedForward takes it only under its guard and without
// biases, and on CUDA the silu_mul kernels read and write the product's halves in place.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/nn/autocast.h"
#include "microdit/nn/feed_forward.h"
#include "microdit/nn/fused_kernels.h"
#include "microdit/nn/swiglu_projection.h"
#include "microdit/nn/weight_grad.h"
#include "test_support.h"

namespace microdit {
namespace {

// Output and the gradients of x, w1 and w2 for the upstream gradient g.
std::vector<at::Tensor> plain(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                              const at::Tensor& g) {
  return test::output_and_grads(at::silu(at::linear(x, w1)) * at::linear(x, w2), {x, w1, w2}, g);
}

std::vector<at::Tensor> merged(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                               const at::Tensor& g) {
  return test::output_and_grads(nn::swiglu_projection(x, w1, w2), {x, w1, w2}, g);
}

struct Leaves {
  at::Tensor x, w1, w2;
};
Leaves leaves(at::TensorOptions options, int64_t D = 24, int64_t F = 40) {
  return {at::randn({3, 7, D}, options).requires_grad_(),
          (at::randn({F, D}, options) * 0.2).requires_grad_(),
          (at::randn({F, D}, options) * 0.2).requires_grad_()};
}

// In float64 the one product equals the two up to the order of float64 sums.
TEST(SwiGLUProjection, EqualsThePlainOpsInFloat64) {
  at::manual_seed(1);
  const auto l = leaves(at::TensorOptions().dtype(at::kDouble));
  const auto g = at::randn({3, 7, 40}, at::kDouble);
  const auto ours = merged(l.x, l.w1, l.w2, g), ref = plain(l.x, l.w1, l.w2, g);
  const char* names[] = {"out", "x", "w1", "w2"};
  for (std::size_t i = 0; i < ours.size(); ++i)
    EXPECT_LE(test::max_relative(ours[i], ref[i]), 1e-12) << names[i];
}

// Under bf16 autocast: the output is the plain ops' (the same bf16 products and activation); the
// gradients are within bf16 rounding (x's gradient is summed in one product instead of two
// rounded ones), in the weights' dtype; under Fp32WeightGradGuard the weights' gradients are the
// float32 product of the same bf16 operands.
TEST(SwiGLUProjection, FollowsAutocastAndTheFloat32WeightGradients) {
  at::manual_seed(2);
  const auto l = leaves(at::TensorOptions().dtype(at::kFloat));
  const auto g = at::randn({3, 7, 40});
  for (const bool fp32_wgrad : {false, true}) {
    SCOPED_TRACE(fp32_wgrad ? "float32 weight gradients" : "autocast's weight gradients");
    nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
    nn::Fp32WeightGradGuard guard(fp32_wgrad);
    const auto ours = merged(l.x, l.w1, l.w2, g), ref = plain(l.x, l.w1, l.w2, g);
    EXPECT_EQ(ours[0].scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(ours[0], ref[0])) << "output";
    EXPECT_EQ(ours[1].scalar_type(), at::kFloat) << "x's gradient in x's dtype";
    EXPECT_LE(test::max_relative(ours[1], ref[1]), std::ldexp(1.0, -7)) << "x";
    for (std::size_t i = 2; i < 4; ++i) {
      EXPECT_EQ(ours[i].scalar_type(), at::kFloat) << "the weight's gradient in its dtype";
      EXPECT_LE(test::max_relative(ours[i], ref[i]), std::ldexp(1.0, -7)) << "weight " << i - 1;
      // bf16 values (a bf16 product) without the guard, float32 ones with it.
      EXPECT_EQ(at::equal(ours[i], ours[i].to(at::kBFloat16).to(at::kFloat)), !fp32_wgrad);
    }
    if (fp32_wgrad) {
      // W1's gradient: the float64 product of the bf16 operands (h's gradient as the plain ops'
      // formulas give it, and x cast), rounded to float32 once.
      const auto x_c = l.x.detach().to(at::kBFloat16).reshape({-1, 24});
      const auto h = at::linear(x_c, at::cat({l.w1, l.w2}).detach().to(at::kBFloat16));
      const auto a = h.narrow(1, 0, 40), b = h.narrow(1, 40, 40);
      const auto da = at::silu_backward(g.reshape({-1, 40}).to(at::kBFloat16) * b, a);
      const auto dw1 = da.to(at::kDouble).t().mm(x_c.to(at::kDouble)).to(at::kFloat);
      EXPECT_LE(test::max_relative(ours[2], dw1), 1e-6) << "W1's float32 product";
    }
  }
}

TEST(SwiGLUProjection, BadShapesAreNamed) {
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [] {
        nn::swiglu_projection(at::randn({2, 5}), at::randn({4, 6}), at::randn({4, 6}));
      },
      "", {"swiglu_projection: x (..., D) and w1, w2 (F, D) expected"}));
}

// FeedForward takes the merged product only under the guard and only without biases; with it
// the module's output and gradients equal the plain path's in float64.
TEST(SwiGLUProjection, FeedForwardMergesOnlyUnderItsGuardAndWithoutBiases) {
  at::manual_seed(3);
  for (const bool bias : {false, true}) {
    SCOPED_TRACE(bias ? "with biases" : "without biases");
    nn::FeedForward ffn(16, 48, 16, bias);
    ffn->to(at::kDouble);
    const auto x = at::randn({2, 5, 16}, at::kDouble).requires_grad_();
    auto run = [&](bool merged_on) {
      nn::MergedSwiGLUGuard guard(merged_on);
      auto out = ffn(x);
      const bool took = test::graph_has(out, "SwiGLUProjection");
      auto grads = torch::autograd::grad({out.sum()}, {x, ffn->w1->weight, ffn->w2->weight});
      return std::make_pair(took, grads);
    };
    const auto [plain_took, plain_grads] = run(false);
    const auto [merged_took, merged_grads] = run(true);
    EXPECT_EQ(merged_took, !bias);
    EXPECT_FALSE(plain_took);
    for (std::size_t i = 0; i < 3; ++i)
      EXPECT_LE(test::max_relative(merged_grads[i], plain_grads[i]), 1e-12) << "leaf " << i;
  }
}

// On the GPU the silu_mul kernels read the product's halves and write h's gradient's halves in
// place: the same output and gradients as the plain ops within a rounding (the output in bf16
// also at most 1% of the elements apart); widths with four and one element per access.
TEST(SwiGLUProjection, KernelsMatchThePlainOps_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  test::NoTF32 no_tf32;
  at::manual_seed(4);
  for (const auto type : {at::kBFloat16, at::kFloat}) {
    for (const int64_t F : {256, 37}) {
      SCOPED_TRACE(testing::Message() << type << " F " << F);
      const auto l = leaves(at::TensorOptions(at::kCUDA).dtype(type), 64, F);
      const auto g = at::randn({3, 7, F}, l.x.options());
      const auto ours = merged(l.x, l.w1, l.w2, g), ref = plain(l.x, l.w1, l.w2, g);
      // x's gradient is rounded once instead of thrice: many bf16 elements one rounding apart.
      test::expect_within_a_rounding(ours, ref, type, 1e-5, /*few_apart=*/false);
      test::expect_within_a_rounding({ours[0]}, {ref[0]}, type);
    }
  }
}

}  // namespace
}  // namespace microdit
