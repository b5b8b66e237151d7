// Tests for nn/expert_combine, the expert-choice MoE's probability-weighted sum of expert outputs
// as one operation: its forward and gradients against the plain ops (gather mode's transposing
// copy, multiply and scatter_add), the slot table its kernel reads, and its rounding in bf16.
// The whole MoE against the official one-hot einsum: FastPath.MoEEqualsOneHotEinsum* (test_precision.cpp);
// the CUDA kernels against the composite path: scripts/device/emulate_kernels.cpp.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "microdit/nn/expert_combine.h"

namespace microdit::nn {
namespace {

struct Choices {
  at::Tensor h, probs, indices;
  int64_t tokens;
};

// B=3 samples of T=10 tokens, E=4 experts choosing K=5 each (so most tokens have several
// choices and some none), width D=12.
Choices choices(at::ScalarType dtype) {
  at::manual_seed(21);
  const int64_t B = 3, T = 10, E = 4, K = 5, D = 12;
  Choices c;
  c.tokens = T;
  c.probs = at::softmax(at::randn({B, E, T}), 1);
  c.indices = std::get<1>(at::topk(c.probs, K, /*dim=*/-1));  // (B,E,K), distinct per (b,e)
  c.probs = c.probs.gather(2, c.indices);
  c.h = at::randn({E, B * K, D}).to(dtype);
  return c;
}

// The plain ops of FeedForwardECMoe's gather mode.
at::Tensor plain(const at::Tensor& h, const at::Tensor& probs, const at::Tensor& indices,
                 int64_t tokens) {
  const int64_t B = indices.size(0), E = indices.size(1), K = indices.size(2), D = h.size(2);
  auto weighted = h.view({E, B, K, D}).transpose(0, 1).reshape({B, E * K, D}) *
                  probs.reshape({B, E * K, 1}).to(h.scalar_type());
  return at::zeros({B, tokens, D}, h.options())
      .scatter_add(1, indices.reshape({B, E * K, 1}).expand_as(weighted), weighted);
}

TEST(ExpertCombine, SlotsHoldEachTokensChoices) {
  const auto c = choices(at::kFloat);
  const auto slots = expert_choice_slots(c.indices, c.tokens);
  ASSERT_EQ(slots.sizes(), (at::IntArrayRef{3, 10, 4}));
  EXPECT_EQ(slots.scalar_type(), at::kInt);
  EXPECT_EQ(slots.ge(0).sum().item<int64_t>(), c.indices.numel());
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t e = 0; e < 4; ++e)
      for (int64_t k = 0; k < 5; ++k) {
        const auto t = c.indices[b][e][k].item<int64_t>();
        EXPECT_EQ(slots[b][t][e].item<int>(), k) << b << " " << e << " " << k;
      }
}

// float64 and float32: the plain ops' values and gradients (the same products; float32 sums in
// the same expert order).
TEST(ExpertCombine, MatchesThePlainOpsAndTheirGradients) {
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto c = choices(dtype);
    auto h = c.h.clone().requires_grad_(), probs = c.probs.clone().requires_grad_();
    auto h2 = c.h.clone().requires_grad_(), probs2 = c.probs.clone().requires_grad_();
    const auto ours = expert_combine(h, probs, c.indices, c.tokens);
    const auto ref = plain(h2, probs2, c.indices, c.tokens);
    EXPECT_EQ(ours.scalar_type(), dtype);
    EXPECT_TRUE(at::allclose(ours, ref, 1e-6, 1e-7));
    const auto g = at::randn_like(ref);
    const auto grads = torch::autograd::grad({ours}, {h, probs}, {g});
    const auto ref_grads = torch::autograd::grad({ref}, {h2, probs2}, {g});
    EXPECT_TRUE(at::allclose(grads[0], ref_grads[0], 1e-6, 1e-7));
    EXPECT_TRUE(at::allclose(grads[1], ref_grads[1], 1e-5, 1e-6));
    EXPECT_EQ(grads[1].scalar_type(), at::kFloat);  // the probabilities' dtype
  }
}

// bf16: each product rounded as the plain ops round it, a token's products summed in float32
// and rounded once: equal to the plain ops where a token has one choice, within a rounding where
// the plain ops rounded after each add.
TEST(ExpertCombine, RoundsAsThePlainOpsInBf16) {
  const auto c = choices(at::kBFloat16);
  const auto ours = expert_combine(c.h, c.probs, c.indices, c.tokens);
  EXPECT_EQ(ours.scalar_type(), at::kBFloat16);
  // Products in bf16 (the plain multiply), sums in float32, rounded once.
  const int64_t B = 3, E = 4, K = 5, D = 12;
  const auto products =
      (c.h.view({E, B, K, D}).transpose(0, 1) * c.probs.to(at::kBFloat16).unsqueeze(-1))
          .to(at::kFloat)
          .reshape({B, E * K, D});
  const auto exact =
      at::zeros({B, c.tokens, D})
          .scatter_add(1, c.indices.reshape({B, E * K, 1}).expand_as(products), products)
          .to(at::kBFloat16);
  EXPECT_TRUE(at::equal(ours, exact));
  const auto once = expert_choice_slots(c.indices, c.tokens).ge(0).sum(-1).eq(1);  // (B,T)
  const auto ref = plain(c.h, c.probs, c.indices, c.tokens);
  ASSERT_TRUE(once.any().item<bool>());
  EXPECT_TRUE(at::equal(ours.index({once}), ref.index({once})));
  EXPECT_TRUE(at::allclose(ours.to(at::kFloat), ref.to(at::kFloat), 1e-2, 1e-2));
}

TEST(ExpertCombine, TokensNoExpertChoseAreZero) {
  auto c = choices(at::kFloat);
  c.indices = at::arange(5).expand({3, 4, 5}).contiguous();  // every expert: tokens 0-4
  const auto out = expert_combine(c.h, c.probs, c.indices, c.tokens);
  EXPECT_TRUE(out.narrow(1, 5, 5).eq(0).all().item<bool>());
  EXPECT_TRUE(out.narrow(1, 0, 5).ne(0).all().item<bool>());
}

TEST(ExpertCombine, RejectsMismatchedShapes) {
  const auto c = choices(at::kFloat);
  try {
    expert_combine(c.h.narrow(1, 0, 14), c.probs, c.indices, c.tokens);
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("h (E,B*K,D)"), std::string::npos);
  }
  EXPECT_THROW(expert_combine(c.h, c.probs, c.indices.to(at::kInt), c.tokens), c10::Error);
  EXPECT_THROW(expert_combine(c.h, c.probs, c.indices, 4), c10::Error);  // K = 5 > 4 tokens
  EXPECT_THROW(expert_combine(c.h.to(at::kInt), c.probs, c.indices, c.tokens), c10::Error);
}

TEST(ExpertCombine, RefusesTensorsOnTwoDevices_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto c = choices(at::kFloat);
  try {
    expert_combine(c.h.cuda(), c.probs, c.indices.cuda(), c.tokens);
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("on one device"), std::string::npos);
  }
}

}  // namespace
}  // namespace microdit::nn
