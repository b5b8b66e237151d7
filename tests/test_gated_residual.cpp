// nn/gated_residual: the blocks' x + gate * y as one operation. On the CPU (ATen ops) its forward
// and gradients must equal autograd's through the plain ops bit for bit, in float64, float32 and
// the mixed dtypes of autocast; the *_CUDA case holds the CUDA kernels to the same, the gate's
// gradient (a sum over the tokens in another order) within its rounding.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/nn/dit_block.h"
#include "microdit/nn/fused_kernels.h"
#include "microdit/nn/gated_residual.h"
#include "test_support.h"

namespace microdit {
namespace {

struct Inputs {
  at::Tensor x, gate, y;
};

// gate as the DiT blocks take it: one (B,D) chunk of a (B,6D) adaLN projection.
Inputs make_inputs(int64_t B, int64_t N, int64_t D, at::ScalarType x_type, at::ScalarType y_type,
                   at::Device device) {
  const auto options = at::TensorOptions(device);
  Inputs in;
  in.x = at::randn({B, N, D}, options).to(x_type).requires_grad_();
  auto projection = at::randn({B, 6 * D}, options).to(y_type).requires_grad_();
  in.gate = projection.narrow(1, 2 * D, D);
  in.y = at::randn({B, N, D}, options).to(y_type).requires_grad_();
  return in;
}

struct Result {
  at::Tensor out, dx, dgate, dy;
};

Result run(const Inputs& in, const at::Tensor& grad, bool fused) {
  Result r;
  r.out = fused ? nn::gated_residual(in.x, in.gate, in.y)
                : in.x + in.gate.unsqueeze(1) * in.y;
  auto grads = torch::autograd::grad({r.out}, {in.x, in.gate, in.y}, {grad});
  r.dx = grads[0];
  r.dgate = grads[1];
  r.dy = grads[2];
  return r;
}

void expect_same_function(const Inputs& in, double gate_tolerance) {
  const auto grad = at::randn(in.x.sizes(), in.x.options().requires_grad(false))
                        .to(at::promote_types(in.x.scalar_type(), in.y.scalar_type()));
  const auto plain = run(in, grad, false);
  const auto fused = run(in, grad, true);
  EXPECT_EQ(fused.out.scalar_type(), plain.out.scalar_type());
  EXPECT_TRUE(at::equal(fused.out, plain.out)) << "forward";
  EXPECT_EQ(fused.dx.scalar_type(), in.x.scalar_type());
  EXPECT_TRUE(at::equal(fused.dx, plain.dx)) << "x";
  EXPECT_TRUE(at::equal(fused.dy, plain.dy)) << "y";
  EXPECT_EQ(fused.dgate.scalar_type(), in.gate.scalar_type());
  EXPECT_LE(test::max_relative(fused.dgate, plain.dgate), gate_tolerance) << "gate";
}

TEST(GatedResidual, EqualsThePlainOpsInFloat64) {
  at::manual_seed(1);
  expect_same_function(make_inputs(3, 17, 24, at::kDouble, at::kDouble, at::kCPU), 0.0);
}

// Under autocast gate and y come from bf16 projections; x is the float32 or bf16 residual stream.
TEST(GatedResidual, RoundsAsThePlainOpsInMixedPrecision) {
  at::manual_seed(2);
  const std::pair<at::ScalarType, at::ScalarType> kTypes[] = {
      {at::kFloat, at::kBFloat16}, {at::kBFloat16, at::kBFloat16}, {at::kFloat, at::kFloat}};
  for (const auto& [x_type, y_type] : kTypes) {
    SCOPED_TRACE(testing::Message() << "x " << x_type << " y " << y_type);
    expect_same_function(make_inputs(2, 33, 40, x_type, y_type, at::kCPU), 0.0);
  }
}

// The DiT block's gated residual: the plain ops built reference, the fused operation built fast.
TEST(GatedResidual, BlockTakesTheFusedPathWhenBuiltFast) {
  auto in = make_inputs(2, 5, 8, at::kFloat, at::kFloat, at::kCPU);
  nn::DiTBlock block(nn::DiTBlockOptions{.dim = 8, .head_dim = 4, .mlp_ratio = 2.0,
                                         .qkv_ratio = 1.0, .multiple_of = 4, .pooled_emb_dim = 8,
                                         .init_std = 0.02});
  EXPECT_EQ(block->residual(in.x, in.gate, in.y).grad_fn()->name(), "AddBackward0");
  nn::apply_execution(*block, {nn::ExecutionMode::fast});
  const auto name = block->residual(in.x, in.gate, in.y).grad_fn()->name();
  EXPECT_NE(name.find("GatedResidualFunction"), std::string::npos) << name;
}

// A gate and y of different dtypes keep the plain ops (the fused backward has one product dtype).
TEST(GatedResidual, MixedGateAndYDtypesKeepThePlainOps) {
  at::manual_seed(3);
  auto in = make_inputs(2, 5, 8, at::kFloat, at::kFloat, at::kCPU);
  auto y = in.y.detach().to(at::kBFloat16).requires_grad_();
  auto out = nn::gated_residual(in.x, in.gate, y);
  EXPECT_TRUE(at::equal(out, in.x + in.gate.unsqueeze(1) * y));
  EXPECT_EQ(out.grad_fn()->name(), "AddBackward0");
}

TEST(GatedResidual, ShapeErrorsNameTheShapes) {
  auto x = at::zeros({2, 5, 8}), y = at::zeros({2, 5, 8});
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        nn::gated_residual(x, at::zeros({2, 7}), y);
      },
      "", {"gated_residual", "gate [2, 7]"}));
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        nn::gated_residual(x, at::zeros({2, 8}), at::zeros({2, 4, 8}));
      },
      "", {"x [2, 5, 8]", "y [2, 4, 8]"}));
}

// The kernels against the plain ops on the same GPU: the dtype pairs of autocast and float32,
// widths with four (72, 1024) and one (70) element per access, 150 tokens per sample so the
// gate sums run in several chunks.
TEST(GatedResidual, KernelsMatchThePlainOps_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  at::manual_seed(4);
  const std::pair<at::ScalarType, at::ScalarType> kTypes[] = {{at::kFloat, at::kFloat},
                                                              {at::kFloat, at::kBFloat16},
                                                              {at::kBFloat16, at::kBFloat16},
                                                              {at::kBFloat16, at::kFloat}};
  for (const auto& [x_type, y_type] : kTypes) {
    for (const int64_t D : {70, 72, 1024}) {
      SCOPED_TRACE(testing::Message() << "x " << x_type << " y " << y_type << " D " << D);
      const double gate_tolerance = y_type == at::kFloat ? 1e-5 : std::ldexp(1.0, -7);
      expect_same_function(make_inputs(3, 150, D, x_type, y_type, at::kCUDA), gate_tolerance);
    }
  }
}

}  // namespace
}  // namespace microdit
