// Tests for nn/expert_dispatch, the gathering of the expert-choice MoE's expert inputs as one
// operation: its forward rows, its gradient against a row-index reference (index_select, whose
// backward is index_add), its rounding in bf16, and its errors. The whole MoE against the
// official one-hot einsum: FastPath.MoEEqualsOneHotEinsum* (test_precision.cpp); the CUDA kernel it reuses
// (the combine's forward) against the composite path: ExpertDispatch.*_CUDA and
// scripts/device/emulate_kernels.cpp.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/nn/expert_dispatch.h"
#include "microdit/nn/fused_kernels.h"

namespace microdit::nn {
namespace {

// B=3 samples of T=10 tokens, E=4 experts choosing K=5 each (most tokens have several choices,
// some none), width D=12.
struct Inputs {
  at::Tensor x, indices;
};

Inputs inputs(at::ScalarType dtype, at::Device device = at::kCPU) {
  at::manual_seed(23);
  const int64_t B = 3, T = 10, E = 4, K = 5, D = 12;
  const auto scores = at::randn({B, E, T});
  Inputs in;
  in.indices = std::get<1>(at::topk(scores, K, /*dim=*/-1)).to(device);  // distinct per (b,e)
  in.x = at::randn({B, T, D}).to(dtype).to(device);
  return in;
}

// A row-index reference: index_select, whose backward adds rows by index_add.
at::Tensor plain(const at::Tensor& x, const at::Tensor& indices) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  return x.reshape({B * T, D})
      .index_select(0, expert_choice_rows(indices, T))
      .view({indices.size(1), B * indices.size(2), D});
}

at::Tensor x_gradient(const at::Tensor& out, const at::Tensor& x, const at::Tensor& g) {
  return torch::autograd::grad({out}, {x}, {g})[0];
}

TEST(ExpertDispatch, RowsAreTheChosenTokensExpertMajor) {
  const auto in = inputs(at::kFloat);
  const auto out = expert_dispatch(in.x, in.indices);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{4, 15, 12}));
  for (int64_t e = 0; e < 4; ++e)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t k = 0; k < 5; ++k) {
        const auto t = in.indices[b][e][k].item<int64_t>();
        EXPECT_TRUE(at::equal(out[e][b * 5 + k], in.x[b][t])) << e << " " << b << " " << k;
      }
}

// float64 and float32: the plain index_add gradient (float32 adds in the same expert order).
TEST(ExpertDispatch, GradientIsThePlainDispatchsGradient) {
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto in = inputs(dtype);
    auto x = in.x.requires_grad_();
    const auto g = at::randn({4, 15, 12}).to(dtype);
    const auto ours = x_gradient(expert_dispatch(x, in.indices), x, g);
    const auto ref = x_gradient(plain(x, in.indices), x, g);
    EXPECT_TRUE(at::allclose(ours, ref, 1e-6, 1e-12));
    EXPECT_EQ(ours.scalar_type(), dtype);
  }
}

TEST(ExpertDispatch, TokensNoExpertChoseGetZeroGradient) {
  auto in = inputs(at::kFloat);
  auto x = in.x.requires_grad_();
  const auto grad = x_gradient(expert_dispatch(x, in.indices), x, at::ones({4, 15, 12}));
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < 10; ++t) {
      const auto chosen = in.indices[b].eq(t).sum().item<int64_t>();
      // Each choice adds a row of ones: the gradient counts the token's choices.
      EXPECT_TRUE(at::equal(grad[b][t], at::full({12}, static_cast<float>(chosen))))
          << b << " " << t;
    }
}

// bf16: each token's gradient rows summed in float32 and rounded once (index_add under autocast
// rounds after every add).
TEST(ExpertDispatch, Bf16GradientIsTheFloat32SumRoundedOnce) {
  auto in = inputs(at::kBFloat16);
  auto x = in.x.requires_grad_();
  const auto g = at::randn({4, 15, 12}).to(at::kBFloat16);
  const auto ours = x_gradient(expert_dispatch(x, in.indices), x, g);
  auto x32 = in.x.detach().to(at::kFloat).requires_grad_();
  const auto ref = x_gradient(plain(x32, in.indices), x32, g.to(at::kFloat)).to(at::kBFloat16);
  EXPECT_EQ(ours.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(ours, ref));
}

TEST(ExpertDispatch, BadInputsAreNamedErrors) {
  const auto in = inputs(at::kFloat);
  auto message = [](auto&& call) {
    try {
      call();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] {
              expert_dispatch(in.x, in.indices.to(at::kInt));
            }).find("int64 indices (B,E,K) expected"),
            std::string::npos);
  EXPECT_NE(message([&] { expert_dispatch(in.x[0], in.indices); }).find("x (B,T,D)"),
            std::string::npos);
  EXPECT_NE(message([&] {
              expert_dispatch(in.x.narrow(1, 0, 4), in.indices);
            }).find("more choices per expert (5) than tokens (4)"),
            std::string::npos);
}

// The CUDA kernel (the combine's forward with unit probabilities) against the CPU: float32
// gradients equal within a rounding, bf16 ones equal (both sum in float32 in expert order).
TEST(ExpertDispatch, KernelGradientMatchesTheCpu_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto cpu = inputs(dtype);
    auto cuda = inputs(dtype, at::kCUDA);
    auto xc = cpu.x.requires_grad_(), xg = cuda.x.requires_grad_();
    const auto g = at::randn({4, 15, 12}).to(dtype);
    const auto ref = x_gradient(expert_dispatch(xc, cpu.indices), xc, g);
    const auto ours = x_gradient(expert_dispatch(xg, cuda.indices), xg, g.to(at::kCUDA)).cpu();
    EXPECT_TRUE(at::allclose(ours.to(at::kFloat), ref.to(at::kFloat), 1e-6, 1e-7));
  }
}

}  // namespace
}  // namespace microdit::nn
