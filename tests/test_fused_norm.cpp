// nn/fused_norm: LayerNorm + adaLN modulation as one operation. In float64 its forward and
// backward formulas must equal autograd through the plain ops; in low precision it must round as
// LPLayerNorm does; the *_CUDA cases hold the CUDA kernels to the composite implementation.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <set>
#include <tuple>

#include "microdit/nn/attention.h"
#include "microdit/nn/autocast.h"
#include "microdit/nn/fused_kernels.h"
#include "microdit/nn/fused_norm.h"
#include "microdit/nn/norm.h"
#include "test_support.h"

namespace microdit {
namespace {

constexpr double kEps = 1e-6;

// The unfused path: at::layer_norm, then x * (1 + scale) + shift.
at::Tensor plain(const at::Tensor& x, const at::Tensor& w, const at::Tensor& shift,
                 const at::Tensor& scale) {
  auto y = at::layer_norm(x, {x.size(-1)}, w, {}, kEps);
  if (shift.defined()) y = y * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
  return y;
}

struct Inputs {
  at::Tensor x, w, shift, scale;
  std::vector<at::Tensor> leaves() const {
    std::vector<at::Tensor> out;
    for (const auto* t : {&x, &w, &shift, &scale})
      if (t->defined()) out.push_back(*t);
    return out;
  }
};

// x (B,N,D) as rows of a wider tensor when `strided` (the q slice of a qkv projection).
Inputs make_inputs(int64_t B, int64_t N, int64_t D, bool weight, bool modulation, bool strided,
                   at::TensorOptions options) {
  Inputs in;
  auto wide = (at::randn({B, N, strided ? 3 * D : D}, options) * 2 + 0.5).requires_grad_();
  in.x = strided ? wide.narrow(2, D, D) : wide;
  if (weight) in.w = (at::rand({D}, options) + 0.5).requires_grad_();
  if (modulation) {
    in.shift = at::randn({B, D}, options).requires_grad_();
    in.scale = (at::randn({B, D}, options) * 0.5).requires_grad_();
  }
  return in;
}

struct Case {
  bool weight, modulation, strided;
};
const Case kCases[] = {{true, true, false},   // norm1/norm3 of a DiT block, the final layer
                       {true, false, false},  // norm2, the caption and mixer blocks
                       {false, false, true},  // QK-norm on a slice of the qkv projection
                       {false, true, true}};

TEST(FusedNorm, EqualsAutogradOfThePlainOpsInFloat64) {
  at::manual_seed(1);
  for (const auto& c : kCases) {
    SCOPED_TRACE(testing::Message() << "weight " << c.weight << " modulation " << c.modulation
                                    << " strided " << c.strided);
    auto in = make_inputs(3, 5, 24, c.weight, c.modulation, c.strided, at::kDouble);
    auto ours = nn::fused_norm(in.x, in.w, kEps, in.shift, in.scale, at::kDouble);
    auto ref = plain(in.x, in.w, in.shift, in.scale);
    EXPECT_LE(test::max_relative(ours, ref), 1e-12);
    auto g = at::randn_like(ref);
    auto leaves = in.leaves();
    auto our_grads = torch::autograd::grad({ours}, leaves, {g});
    auto ref_grads = torch::autograd::grad({ref}, leaves, {g});
    for (std::size_t i = 0; i < leaves.size(); ++i)
      EXPECT_LE(test::max_relative(our_grads[i], ref_grads[i]), 1e-10) << "gradient " << i;
  }
}

TEST(FusedNorm, StridedRowsAreReadInPlaceAndTheirGradientLandsInTheSlice) {
  at::manual_seed(2);
  auto wide = at::randn({2, 4, 48}, at::kDouble).requires_grad_();  // a qkv projection
  auto x = wide.narrow(2, 0, 16);
  auto ours = nn::fused_norm(x, {}, kEps, {}, {}, at::kDouble);
  const auto g = at::randn_like(ours);
  (ours * g).sum().backward();
  EXPECT_EQ(wide.grad().narrow(2, 16, 32).abs().max().item<double>(), 0.0)
      << "the other columns get no gradient";
  auto ref_x = x.detach().requires_grad_();
  (at::layer_norm(ref_x, {16}, {}, {}, kEps) * g).sum().backward();
  EXPECT_LE(test::max_relative(wide.grad().narrow(2, 0, 16), ref_x.grad()), 1e-10);
}

// Low precision: x and the weight rounded to bfloat16 first (LPLayerNorm), the rest in float32,
// one rounding at the end: within one bfloat16 rounding of that computed in float64.
TEST(FusedNorm, RoundsLikeLowPrecisionLayerNorm) {
  at::manual_seed(3);
  auto in = make_inputs(2, 6, 40, true, true, false, at::kFloat);
  auto ours = nn::fused_norm(in.x, in.w, kEps, in.shift, in.scale, at::kBFloat16);
  EXPECT_EQ(ours.scalar_type(), at::kBFloat16);
  auto round = [](const at::Tensor& t) { return t.detach().to(at::kBFloat16).to(at::kDouble); };
  auto ref = plain(round(in.x), round(in.w), in.shift.detach().to(at::kDouble),
                   in.scale.detach().to(at::kDouble));
  auto err = (ours.to(at::kDouble) - ref).abs();
  EXPECT_TRUE((err <= ref.abs() * std::ldexp(1.0, -8) + 1e-6).all().item<bool>())
      << "max error " << err.max().item<double>();
  // Not rounding x first would differ: the test sees the rounding.
  auto unrounded = plain(in.x.detach().to(at::kDouble), round(in.w),
                         in.shift.detach().to(at::kDouble), in.scale.detach().to(at::kDouble));
  EXPECT_GT((unrounded - ref).abs().max().item<double>(), 1e-4);
  // Backward keeps only the rounded rows (half the memory of float32 x) and still gives float32
  // gradients: those of the float64 computation on the rounded input, to float32 precision.
  auto g = at::randn_like(ours);
  auto grads = torch::autograd::grad({ours}, in.leaves(), {g});
  EXPECT_EQ(grads[0].scalar_type(), at::kFloat);
  auto x_r = round(in.x).requires_grad_();
  auto ref_r =
      plain(x_r, round(in.w), in.shift.detach().to(at::kDouble), in.scale.detach().to(at::kDouble));
  auto ref_gx = torch::autograd::grad({ref_r}, {x_r}, {g.to(at::kDouble)})[0];
  EXPECT_LE(test::max_relative(grads[0], ref_gx), 1e-5);
  auto rows = in.x.detach().flatten(0, 1);
  EXPECT_TRUE(
      nn::fused_norm_forward_composite(rows, {}, {}, {}, kEps, at::kBFloat16).rounded.defined());
  EXPECT_FALSE(
      nn::fused_norm_forward_composite(rows.to(at::kBFloat16), {}, {}, {}, kEps, at::kBFloat16)
          .rounded.defined())
      << "bfloat16 x is kept as it is";
}

// A LayerNorm takes the fused path when built fast (nn::apply_execution), and keeps its dtype
// rule: the autocast dtype for low-precision norms, float32 under plain autocast.
TEST(FusedNorm, ModuleTakesTheFusedPathWhenBuiltFast) {
  at::manual_seed(4);
  nn::LayerNorm norm(32, kEps);
  {
    at::NoGradGuard no_grad;
    norm->weight.uniform_(0.5, 1.5);
  }
  auto x = at::randn({2, 3, 32});
  auto shift = at::randn({2, 32}), scale = at::randn({2, 32});
  const auto unfused = norm->forward_modulated(x, shift, scale);
  EXPECT_TRUE(at::allclose(unfused, plain(x, norm->weight, shift, scale)));
  EXPECT_FALSE(test::graph_has(unfused, "FusedNorm"));
  nn::apply_execution(*norm, {nn::ExecutionMode::fast, /*low_precision_norm=*/true});
  auto y = norm->forward_modulated(x, shift, scale);
  EXPECT_NE(y.grad_fn()->name().find("FusedNorm"), std::string::npos) << y.grad_fn()->name();
  EXPECT_LE(test::max_relative(y, unfused), 1e-5);
  EXPECT_LE(test::max_relative(norm(x), at::layer_norm(x, {32}, norm->weight, {}, kEps)), 1e-5);
  {
    nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
    EXPECT_EQ(norm(x).scalar_type(), at::kBFloat16) << "as the unfused low-precision norm";
  }
  nn::apply_execution(*norm, {nn::ExecutionMode::fast, /*low_precision_norm=*/false});
  nn::AutocastGuard autocast(at::kCPU, at::kBFloat16);
  EXPECT_EQ(norm(x).scalar_type(), at::kFloat) << "plain autocast: float32 as at::layer_norm";
}

// fused_norm_with_residual in a block's pattern, x * r + f(LN(x)): the gradient reaching the
// passed-on x is added inside the norm's backward; in float64 the sum equals autograd's through
// the plain ops, for every case, and the backward is taken (the residual is the norm's output).
TEST(FusedNorm, PassedResidualGradientEqualsAutogradOfTheResidualAdd) {
  at::manual_seed(6);
  for (const auto& c : kCases) {
    SCOPED_TRACE(testing::Message() << "weight " << c.weight << " modulation " << c.modulation
                                    << " strided " << c.strided);
    auto in = make_inputs(3, 5, 24, c.weight, c.modulation, c.strided, at::kDouble);
    auto ours = nn::fused_norm_with_residual(in.x, in.w, kEps, in.shift, in.scale, at::kDouble);
    EXPECT_TRUE(at::equal(ours.residual, in.x));
    ASSERT_TRUE(ours.residual.grad_fn());
    EXPECT_NE(ours.residual.grad_fn()->name().find("FusedNorm"), std::string::npos)
        << ours.residual.grad_fn()->name();
    const auto r = at::randn_like(in.x), g = at::randn_like(in.x);
    auto leaves = in.leaves();
    auto our_grads = torch::autograd::grad({(ours.residual * r + ours.normed * g).sum()}, leaves);
    auto ref = in.x * r + plain(in.x, in.w, in.shift, in.scale) * g;
    auto ref_grads = torch::autograd::grad({ref.sum()}, leaves);
    for (std::size_t i = 0; i < leaves.size(); ++i)
      EXPECT_LE(test::max_relative(our_grads[i], ref_grads[i]), 1e-10) << "gradient " << i;
  }
}

// Only the normed output used: the x gradient is the norm's alone, as fused_norm's.
TEST(FusedNorm, UnusedResidualAddsNothing) {
  at::manual_seed(7);
  auto in = make_inputs(2, 4, 16, true, true, false, at::kDouble);
  auto ours = nn::fused_norm_with_residual(in.x, in.w, kEps, in.shift, in.scale, at::kDouble);
  const auto g = at::randn_like(in.x);
  auto with = torch::autograd::grad({ours.normed}, {in.x}, {g})[0];
  auto alone = torch::autograd::grad(
      {nn::fused_norm(in.x, in.w, kEps, in.shift, in.scale, at::kDouble)}, {in.x}, {g})[0];
  EXPECT_TRUE(at::equal(with, alone));
}

// Built fast, the module folds: its residual carries the norm's backward; built reference, the
// residual is x itself.
TEST(FusedNorm, ModuleFoldsWhenBuiltFast) {
  nn::LayerNorm norm(16, kEps);
  auto x = at::randn({2, 3, 16}).requires_grad_();
  auto shift = at::randn({2, 16}), scale = at::randn({2, 16});
  const auto unfolded = norm->forward_with_residual(x, shift, scale);
  EXPECT_TRUE(unfolded.residual.is_same(x));
  nn::apply_execution(*norm, {nn::ExecutionMode::fast});
  const auto folded = norm->forward_with_residual(x, shift, scale);
  EXPECT_FALSE(folded.residual.is_same(x));
  EXPECT_TRUE(at::equal(folded.residual, x));
  EXPECT_LE(test::max_relative(folded.normed, unfolded.normed), 1e-5);
  ASSERT_TRUE(folded.residual.grad_fn());
  EXPECT_NE(folded.residual.grad_fn()->name().find("FusedNorm"), std::string::npos);
}

// The composite x gradient (R,D) of a weighted, modulated norm of `in` with output gradient gy and
// the passed-on residual's gradient gr (or undefined), as the autograd function computes it.
at::Tensor composite_grad_x(const Inputs& in, const at::Tensor& gy, const at::Tensor& gr,
                            at::ScalarType out_type, at::ScalarType grad_x_type) {
  const auto rows = in.x.detach().flatten(0, 1);
  const auto w = in.w.detach().to(out_type).to(at::kFloat);
  const auto shift = in.shift.detach().to(at::kFloat);
  const auto scale1p = 1 + in.scale.detach().to(at::kFloat);
  const auto fwd = nn::fused_norm_forward_composite(rows, w, shift, scale1p, kEps, out_type);
  const auto& kept = fwd.rounded.defined() ? fwd.rounded : rows;
  return nn::fused_norm_backward_composite(gy.flatten(0, 1), kept, w, scale1p, fwd.mean, fwd.rstd,
                                           true, grad_x_type,
                                           gr.defined() ? gr.flatten(0, 1) : at::Tensor())
      .x;
}

// bfloat16 x: the norm's gradient and the residual's are summed in float32 and rounded once.
TEST(FusedNorm, PassedResidualGradientIsRoundedOnce) {
  at::manual_seed(8);
  auto in = make_inputs(2, 6, 64, true, true, false, at::kBFloat16);
  auto ours = nn::fused_norm_with_residual(in.x, in.w, kEps, in.shift, in.scale, at::kBFloat16);
  const auto gr = at::randn_like(in.x), gy = at::randn_like(in.x);
  auto grads = torch::autograd::grad({ours.residual, ours.normed}, {in.x}, {gr, gy});
  ASSERT_EQ(grads[0].scalar_type(), at::kBFloat16);
  const auto norm_only = composite_grad_x(in, gy, {}, at::kBFloat16, at::kFloat);
  const auto once = (norm_only + gr.flatten(0, 1).to(at::kFloat)).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(grads[0].flatten(0, 1), once));
}

// fused_norm_split against chunk + fused_norm in float64: the same values, and the same
// gradient of the projection from every chunk's gradient, for the self-attention's qkv (two
// normed chunks of three), the cross-attention's kv (one of two) and a lone q.
TEST(FusedNorm, SplitEqualsChunksAndNormsInFloat64) {
  at::manual_seed(10);
  for (const auto& [chunks, normed] : {std::pair<int64_t, int64_t>{3, 2}, {2, 1}, {1, 1}}) {
    SCOPED_TRACE(testing::Message() << normed << " of " << chunks);
    auto proj = (at::randn({2, 5, chunks * 16}, at::kDouble) * 2 + 0.5).requires_grad_();
    const auto ours = nn::fused_norm_split(proj, chunks, normed, kEps);
    auto ref = proj.chunk(chunks, -1);
    for (int64_t i = 0; i < normed; ++i)
      ref[i] = nn::fused_norm(ref[i], {}, kEps, {}, {}, at::kDouble);
    ASSERT_EQ(ours.size(), ref.size());
    std::vector<at::Tensor> g;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      EXPECT_LE(test::max_relative(ours[i], ref[i]), 1e-12) << "chunk " << i;
      g.push_back(at::randn_like(ref[i]));
    }
    EXPECT_TRUE(test::graph_has(ours[0], "NormedSplit"));
    const auto our_grad = torch::autograd::grad(ours, {proj}, g)[0];
    const auto ref_grad = torch::autograd::grad(ref, {proj}, g)[0];
    EXPECT_LE(test::max_relative(our_grad, ref_grad), 1e-12);
  }
}

// A chunk whose output reached nothing gets a zero gradient slice.
TEST(FusedNorm, SplitChunksWithoutGradientGetZeros) {
  auto proj = at::randn({2, 3, 24}, at::kDouble).requires_grad_();
  const auto parts = nn::fused_norm_split(proj, 3, 2, kEps);
  const auto grad = torch::autograd::grad({parts[1]}, {proj}, {at::ones_like(parts[1])})[0];
  EXPECT_EQ(grad.narrow(-1, 0, 8).abs().max().item<double>(), 0.0);
  EXPECT_EQ(grad.narrow(-1, 16, 8).abs().max().item<double>(), 0.0);
  EXPECT_GT(grad.narrow(-1, 8, 8).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(test::throws_with<c10::Error>([&] { nn::fused_norm_split(proj, 5, 2, kEps); }, "",
                                            {"fused_norm_split: 2 of 5 chunks", "[2, 3, 24]"}));
  EXPECT_TRUE(test::throws_with<c10::Error>([&] { nn::fused_norm_split(proj, 3, 0, kEps); }, "",
                                            {"fused_norm_split: 0 of 3 chunks"}));
}

// The chunks not normed get their gradients in the projection's gradient exactly as they came:
// as 8-byte words where the rows allow it (bf16 and half widths of 4, float32 widths of 2) and
// element by element where not, from a contiguous gradient and from a transposed one.
TEST(FusedNorm, SplitCopiesTheOtherChunksGradientsExactly) {
  at::manual_seed(13);
  for (const auto type : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (const int64_t width : {16, 6, 3}) {
      SCOPED_TRACE(testing::Message() << type << ", width " << width);
      auto proj = at::randn({2, 5, 3 * width}).to(type).requires_grad_();
      const auto parts = nn::fused_norm_split(proj, 3, 2, kEps);
      const auto contiguous = at::randn({2, 5, width}).to(type);
      const auto transposed = at::randn({5, 2, width}).to(type).transpose(0, 1);
      for (const auto& g : {contiguous, transposed}) {
        const auto grad = torch::autograd::grad({parts[2]}, {proj}, {g}, /*retain_graph=*/true)[0];
        EXPECT_TRUE(at::equal(grad.narrow(-1, 2 * width, width), g));
        EXPECT_EQ(grad.narrow(-1, 0, 2 * width).abs().max().item<double>(), 0.0);
      }
    }
  }
}

// Built fast, the attentions take the split, with the same outputs and gradients as the plain
// chunks and norms; built reference, they do not.
TEST(FusedNorm, AttentionsSplitWhenBuiltFast) {
  at::manual_seed(11);
  nn::SelfAttention self_attn(nn::AttentionOptions{16, 16, 2});
  nn::CrossAttention cross_attn(nn::AttentionOptions{16, 16, 2});
  auto x = at::randn({2, 5, 16}).requires_grad_();
  auto cond = at::randn({2, 7, 16}).requires_grad_();
  auto run = [&](nn::ExecutionMode mode) {
    nn::apply_execution(*self_attn, {mode});
    nn::apply_execution(*cross_attn, {mode});
    auto out = self_attn(x) + cross_attn(x, cond);
    auto grads = torch::autograd::grad({out.sum()}, {x, cond});
    return std::tuple{out, grads, test::graph_has(out, "NormedSplit")};
  };
  const auto [plain, plain_grads, plain_split] = run(nn::ExecutionMode::reference);
  const auto [split, split_grads, split_taken] = run(nn::ExecutionMode::fast);
  EXPECT_FALSE(plain_split);
  EXPECT_TRUE(split_taken);
  EXPECT_LE(test::max_relative(split, plain), 1e-5);
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_LE(test::max_relative(split_grads[i], plain_grads[i]), 1e-4) << "gradient " << i;
}

TEST(FusedNorm, BadShapesAreNamed) {
  auto x = at::randn({2, 3, 8});
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        nn::fused_norm(x, {}, kEps, at::randn({2, 8}), {}, at::kFloat);
      },
      "", {"shift and scale come together"}));
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] {
        nn::fused_norm(x, {}, kEps, at::randn({3, 8}), at::randn({3, 8}), at::kFloat);
      },
      "", {"modulation expects x (B,N,D)", "[2, 3, 8]", "[3, 8]"}));
  EXPECT_TRUE(test::throws_with<c10::Error>(
      [&] { nn::fused_norm(x, at::ones({7}), kEps, {}, {}, at::kFloat); }, "",
      {"weight of shape [7] for rows of width 8"}));
}

// The kernels against the composite implementation on the same GPU, forward and backward, for
// the dtype pairs the model uses, the kCases and `widths`, and enough rows per sample for several
// column-sum chunks.
void expect_kernels_match_composite(std::initializer_list<int64_t> widths) {
  const std::pair<at::ScalarType, at::ScalarType> kTypes[] = {
      {at::kFloat, at::kFloat}, {at::kFloat, at::kBFloat16}, {at::kBFloat16, at::kBFloat16}};
  for (const auto& [in_type, out_type] : kTypes) {
    for (const auto& c : kCases) {
      for (const int64_t D : widths) {
        SCOPED_TRACE(testing::Message() << in_type << "->" << out_type << " D " << D << " weight "
                                        << c.weight << " modulation " << c.modulation);
        auto in = make_inputs(3, 150, D, c.weight, c.modulation, c.strided,
                              at::TensorOptions(at::kCUDA).dtype(in_type));
        const auto rows = in.x.detach().flatten(0, 1);
        auto w = c.weight ? in.w.detach().to(out_type).to(at::kFloat) : at::Tensor();
        auto shift = c.modulation ? in.shift.detach().to(at::kFloat) : at::Tensor();
        auto scale1p = c.modulation ? (1 + in.scale.detach().to(at::kFloat)) : at::Tensor();
        auto ref = nn::fused_norm_forward_composite(rows, w, shift, scale1p, kEps, out_type);
        auto ours = nn::fused_norm(in.x, in.w, kEps, in.shift, in.scale, out_type);
        const double tol = out_type == at::kFloat ? 1e-5 : std::ldexp(1.0, -7);
        EXPECT_LE(test::max_relative(ours.flatten(0, 1), ref.y), tol);
        auto g = at::randn_like(ours);
        auto leaves = in.leaves();
        auto grads = torch::autograd::grad({ours}, leaves, {g});
        const auto& kept = ref.rounded.defined() ? ref.rounded : rows;
        auto ref_grads = nn::fused_norm_backward_composite(
            g.flatten(0, 1), kept, w, scale1p, ref.mean, ref.rstd, c.modulation, in_type);
        // bfloat16 inputs get bfloat16 gradients: one rounding apart at most.
        const double grad_tol = in_type == at::kFloat ? 1e-4 : 1e-2;
        EXPECT_LE(test::max_relative(grads[0].flatten(0, 1), ref_grads.x), grad_tol) << "x";
        std::size_t i = 1;
        if (c.weight)
          EXPECT_LE(test::max_relative(grads[i++], ref_grads.weight), grad_tol) << "weight";
        if (c.modulation) {
          EXPECT_LE(test::max_relative(grads[i++], ref_grads.shift), grad_tol) << "shift";
          EXPECT_LE(test::max_relative(grads[i++], ref_grads.scale), grad_tol) << "scale";
        }
      }
    }
  }
}

TEST(FusedNorm, KernelsMatchTheComposite_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  at::manual_seed(5);
  // 70: one element per access (70 % 4 != 0); 72 and 1152: four.
  expect_kernels_match_composite({70, 72, 1152});
}

// The residual's gradient added inside the kernels' backward: x's gradient against the
// composite's with the residual.
TEST(FusedNorm, KernelsAddTheResidualGradient_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  at::manual_seed(15);
  for (const auto type : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(testing::Message() << type);
    auto in =
        make_inputs(3, 150, 1024, true, true, false, at::TensorOptions(at::kCUDA).dtype(type));
    const auto gr = at::randn_like(in.x), gy = at::randn_like(in.x);
    auto out = nn::fused_norm_with_residual(in.x, in.w, kEps, in.shift, in.scale, type);
    auto grads = torch::autograd::grad({out.residual, out.normed}, in.leaves(), {gr, gy});
    EXPECT_LE(
        test::max_relative(grads[0].flatten(0, 1), composite_grad_x(in, gy, gr, type, type)),
        type == at::kFloat ? 1e-4 : 1e-2)
        << "x with the residual";
  }
}

// The kernels' residual-gradient add against the composite's, for the dtypes the model uses.
TEST(FusedNorm, PassedResidualKernelMatchesTheComposite_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  at::manual_seed(9);
  for (const auto type : {at::kFloat, at::kBFloat16}) {
    for (const int64_t D : {70, 1152}) {
      SCOPED_TRACE(testing::Message() << type << " D " << D);
      auto in = make_inputs(3, 150, D, true, true, false, at::TensorOptions(at::kCUDA).dtype(type));
      auto ours = nn::fused_norm_with_residual(in.x, in.w, kEps, in.shift, in.scale, type);
      const auto gr = at::randn_like(in.x), gy = at::randn_like(in.x);
      auto gx = torch::autograd::grad({ours.residual, ours.normed}, {in.x}, {gr, gy})[0];
      const auto ref = composite_grad_x(in, gy, gr, type, type);
      EXPECT_LE(test::max_relative(gx.flatten(0, 1), ref), type == at::kFloat ? 1e-4 : 1e-2);
    }
  }
}

// The split on the GPU: the norm's kernels write their gradient rows into the projection's
// gradient; the same values as chunk + fused_norm with autograd's concatenation.
TEST(FusedNorm, SplitKernelsMatchChunksAndNorms_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!nn::fused_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc)";
  at::manual_seed(12);
  for (const auto type : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(testing::Message() << type);
    auto proj =
        at::randn({4, 64, 3 * 768}, at::TensorOptions(at::kCUDA).dtype(type)).requires_grad_();
    const auto ours = nn::fused_norm_split(proj, 3, 2, kEps);
    auto ref = proj.chunk(3, -1);
    for (int64_t i = 0; i < 2; ++i) ref[i] = nn::fused_norm(ref[i], {}, kEps, {}, {}, type);
    std::vector<at::Tensor> g;
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(at::equal(ours[i], ref[i])) << "chunk " << i;
      g.push_back(at::randn_like(ref[i]));
    }
    EXPECT_TRUE(at::equal(torch::autograd::grad(ours, {proj}, g)[0],
                          torch::autograd::grad(ref, {proj}, g)[0]));
  }
}

}  // namespace
}  // namespace microdit
