// nn/weight_grad: under autocast the weight gradients come out of the products in float32. The
// forward and the input's gradient must be autocast's own; the weight's (and bias's) gradient
// must be the float32 product of the same bf16 operands, which the plain path only gives rounded
// to bf16. The *_CUDA cases run the same checks on cuBLAS's float32-output products.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/nn/activation_recompute.h"
#include "microdit/nn/autocast.h"
#include "microdit/nn/weight_grad.h"
#include "test_support.h"

namespace microdit {
namespace {

at::Tensor as_double(const at::Tensor& t) { return t.detach().to(at::kDouble); }
at::Tensor round_bf16(const at::Tensor& t) { return t.detach().to(at::kBFloat16); }

// The largest relative distance of a gradient from the float64 product of the same bf16
// operands: float32 rounding for ours, bf16 rounding for the plain path's.
double from_exact(const at::Tensor& grad, const at::Tensor& exact) {
  return test::max_relative(as_double(grad), exact);
}

std::string grad_fn_name(const at::Tensor& t) { return t.grad_fn() ? t.grad_fn()->name() : ""; }

void expect_linear_gradients(at::Device device) {
  at::manual_seed(11);
  const auto f32 = at::TensorOptions(device).dtype(at::kFloat);
  auto x = at::randn({4, 6, 32}, f32).requires_grad_();
  auto w = (at::randn({24, 32}, f32) * 0.2).requires_grad_();
  auto b = at::randn({24}, f32).requires_grad_();
  nn::AutocastGuard autocast(device.type(), at::kBFloat16);
  const auto ref = at::linear(x, w, b);
  const auto g = at::randn_like(ref);
  const auto ref_grads = torch::autograd::grad({ref}, {x, w, b}, {g});
  const auto ours = nn::linear(x, w, b, /*fp32_weight_grad=*/true);
  EXPECT_NE(grad_fn_name(ours).find("LinearFunction"), std::string::npos) << grad_fn_name(ours);
  EXPECT_TRUE(at::equal(ours, ref)) << "autocast's forward";
  const auto grads = torch::autograd::grad({ours}, {x, w, b}, {g});
  EXPECT_LE(test::max_relative(grads[0], ref_grads[0]), 1e-6) << "autocast's input gradient";
  EXPECT_EQ(grads[1].scalar_type(), at::kFloat);
  const auto g2 = as_double(g).reshape({-1, 24});
  const auto exact_w = g2.t().mm(as_double(round_bf16(x)).reshape({-1, 32}));
  EXPECT_LE(from_exact(grads[1], exact_w), 1e-5);
  EXPECT_GT(from_exact(ref_grads[1], exact_w), 1e-4) << "the plain path rounds to bf16";
  const auto exact_b = g2.sum(0);
  EXPECT_LE(from_exact(grads[2], exact_b), 1e-5);
  EXPECT_GT(from_exact(ref_grads[2], exact_b), 1e-4);
}

TEST(WeightGrad, LinearGradientsAreTheFloat32Products) { expect_linear_gradients(at::kCPU); }

TEST(WeightGrad, LinearGradientsAreTheFloat32Products_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_linear_gradients(at::kCUDA);
}

void expect_bmm_gradients(at::Device device, bool with_gelu) {
  SCOPED_TRACE(with_gelu ? "gelu_bmm" : "weight_bmm");
  at::manual_seed(12);
  const auto f32 = at::TensorOptions(device).dtype(at::kFloat);
  auto x = at::randn({3, 10, 16}, f32).to(at::kBFloat16).requires_grad_();
  auto w = (at::randn({3, 16, 20}, f32) * 0.3).requires_grad_();
  nn::AutocastGuard autocast(device.type(), at::kBFloat16);
  const auto ours = with_gelu ? nn::gelu_bmm(x, w, true) : nn::weight_bmm(x, w, true);
  const auto g = at::randn_like(ours);
  const auto grads = torch::autograd::grad({ours}, {x, w}, {g});
  EXPECT_EQ(grads[1].scalar_type(), at::kFloat);
  // The plain ops' gradient of x, and the float64 product of the operands the weight gradient
  // multiplies (gelu(x) rounded to bf16 with the activation).
  const auto left = with_gelu ? at::gelu(x.detach()) : x.detach();
  const auto exact_w = as_double(left).transpose(1, 2).bmm(as_double(g));
  EXPECT_LE(from_exact(grads[1], exact_w), 1e-5);
  EXPECT_GT(from_exact(round_bf16(exact_w), exact_w), 1e-4) << "bf16 rounding would show";
  const auto ref = with_gelu ? at::bmm(at::gelu(x), w) : at::bmm(x, w);
  EXPECT_TRUE(at::equal(ours, ref)) << "autocast's forward";
  const auto ref_dx = torch::autograd::grad({ref}, {x}, {g})[0];
  EXPECT_LE(test::max_relative(grads[0], ref_dx), 1e-6) << "autocast's input gradient";
}

TEST(WeightGrad, ExpertProductsGiveFloat32WeightGradients) {
  expect_bmm_gradients(at::kCPU, /*with_gelu=*/false);
  expect_bmm_gradients(at::kCPU, /*with_gelu=*/true);
}

TEST(WeightGrad, ExpertProductsGiveFloat32WeightGradients_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  test::NoTF32 no_tf32;
  expect_bmm_gradients(at::kCUDA, /*with_gelu=*/false);
  expect_bmm_gradients(at::kCUDA, /*with_gelu=*/true);
}

// Not asked for, without autocast, or for a weight that needs no gradient: the plain op.
TEST(WeightGrad, PlainWhereItDoesNotApply) {
  auto x = at::randn({2, 8});
  auto w = at::randn({4, 8}).requires_grad_();
  {
    nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
    EXPECT_EQ(grad_fn_name(nn::linear(x, w, {}, false)).find("LinearFunction"), std::string::npos);
  }
  EXPECT_EQ(grad_fn_name(nn::linear(x, w, {}, true)).find("LinearFunction"), std::string::npos)
      << "no autocast: float32 products already";
  nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
  EXPECT_NE(grad_fn_name(nn::linear(x, w, {}, true)).find("LinearFunction"), std::string::npos);
  EXPECT_EQ(grad_fn_name(nn::linear(x, w.detach(), {}, true)).find("LinearFunction"),
            std::string::npos);
  at::NoGradGuard no_grad;
  EXPECT_FALSE(nn::linear(x, w, {}, true).requires_grad());
}

// nn::Linear is torch::nn::Linear (parameters, names, options) with nn::linear as forward, the
// float32 weight gradients when built fast.
TEST(WeightGrad, LinearModuleKeepsTorchLinearsParameters) {
  nn::Linear linear(torch::nn::LinearOptions(8, 4).bias(false));
  const auto names = linear->named_parameters().keys();
  EXPECT_EQ(names, std::vector<std::string>{"weight"});
  EXPECT_NE(linear->as<torch::nn::Linear>(), nullptr);
  const auto x = at::randn({3, 8});
  EXPECT_TRUE(at::equal(linear(x), at::linear(x, linear->weight)));
  nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
  EXPECT_EQ(grad_fn_name(linear(x)).find("LinearFunction"), std::string::npos) << "reference";
  nn::apply_execution(*linear, {nn::ExecutionMode::fast});
  EXPECT_NE(grad_fn_name(linear(x)).find("LinearFunction"), std::string::npos);
}

TEST(WeightGrad, ProductInFloatRefusesMismatchedOperands) {
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [] {
        nn::product_in_float(at::ones({2, 3}, at::kBFloat16), at::ones({3, 2}));
      },
      "", {"product_in_float: two matrices or batches of one dtype expected"}));
}

}  // namespace
}  // namespace microdit
