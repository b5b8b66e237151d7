// Token routing (model/token_route.h, TREAD): against the unmasked model where the definition
// says they agree, and against a float64 reference of the definition written here with per-sample
// index_select / index_copy instead of the model's batched gather / scatter.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "microdit/model/flops.h"
#include "microdit/model/microdit.h"
#include "microdit/model/token_route.h"
#include "microdit/io/state_dict.h"
#include "test_support.h"

namespace microdit::model {
namespace {

struct Inputs {
  at::Tensor x, t, y;
};

Inputs inputs(const DiTConfig& c, int64_t batch, at::ScalarType type = at::kFloat) {
  at::manual_seed(7);
  const auto options = at::TensorOptions(type);
  return {at::randn({batch, c.in_channels, c.input_size, c.input_size}, options),
          at::rand({batch}, options), at::randn({batch, 1, 5, c.caption_channels}, options)};
}

// The model as initialised, then every weight moved a little: the official init zeroes the
// output layer and the modulations, which would make every output (and most gradients) zero.
DiT perturbed(const DiTConfig& config) {
  DiT m(config);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.add_(at::randn_like(p) * 0.05);
  return m;
}

DiT copy_as(DiT& source, at::ScalarType type) {
  DiT copy(source->config);
  io::load_state_dict(*copy, io::state_dict(*source));
  copy->to(type);
  return copy;
}

// The definition, sample by sample: blocks start..end see the sample's routed tokens only; after
// `end` each of them is written back at its position into the stream saved before `start`.
at::Tensor reference_forward(DiT& m, const Inputs& in, const TokenRoute& route) {
  auto x = m->x_embedder(in.x) + m->pos_embed;
  auto [y, c] = m->condition(in.t, in.y, x.size(0));
  if (m->config.use_patch_mixer) x = m->patch_mixer.map_out(m->patch_mixer.mix(x, y, c));
  at::Tensor saved;
  for (int64_t b = 0; b < static_cast<int64_t>(m->blocks->size()); ++b) {
    if (b == route.start_block) {
      saved = x;
      std::vector<at::Tensor> kept;
      for (int64_t i = 0; i < x.size(0); ++i) kept.push_back(x[i].index_select(0, route.ids_keep[i]));
      x = at::stack(kept);
    }
    x = m->blocks[b]->as<nn::DiTBlock>()->forward(x, y, c);
    if (b == route.end_block) {
      std::vector<at::Tensor> merged;
      for (int64_t i = 0; i < x.size(0); ++i) {
        merged.push_back(saved[i].index_copy(0, route.ids_keep[i], x[i]));
      }
      x = at::stack(merged);
    }
  }
  return m->unpatchify(m->final_layer(x, c));
}

// small_config: patch-mixer of another width, MoE in backbone block 1 and in the mixer, layer-wise
// scaled widths.
TEST(TokenRoute, ZeroLengthRangeEqualsTheUnmaskedModelExactly) {
  const auto config = test::small_config();
  DiT m = perturbed(config);
  const auto in = inputs(config, 3);
  const auto route = route_from_noise(at::rand({3, config.num_patches()}), 0.5, 2, 1);
  EXPECT_TRUE(at::equal(m->forward(in.x, in.t, in.y, nullptr, &route), m->forward(in.x, in.t, in.y)));
}

// Ratio 0 routes every token, in shuffled order, through the range: attention and expert choice
// do not depend on token order, so only the rounding differs.
TEST(TokenRoute, RatioZeroEqualsTheUnmaskedModelUpToRounding) {
  const auto config = test::small_config();
  DiT m = perturbed(config);
  const auto in = inputs(config, 3);
  const auto route = route_from_noise(at::rand({3, config.num_patches()}), 0.0, 0, 3);
  ASSERT_EQ(route.ids_keep.size(1), config.num_patches());
  EXPECT_LT(test::max_relative(m->forward(in.x, in.t, in.y, nullptr, &route),
                               m->forward(in.x, in.t, in.y)),
            1e-5);
}

// A route over the backbone's MoE block (1) and a dense one (2), after a mixer: output and
// every gradient against the float64 reference.
TEST(TokenRoute, OutputAndGradientsMatchAFloat64Reference) {
  const auto config = test::small_config();
  DiT m = perturbed(config);
  DiT reference = copy_as(m, at::kDouble);
  const auto in = inputs(config, 2);
  const Inputs in64{in.x.to(at::kDouble), in.t.to(at::kDouble), in.y.to(at::kDouble)};
  const auto route = route_from_noise(at::rand({2, config.num_patches()}), 0.5, 1, 2);
  ASSERT_EQ(route.ids_keep.size(1), routed_tokens(config.num_patches(), 0.5));

  const auto out = m->forward(in.x, in.t, in.y, nullptr, &route);
  const auto out64 = reference_forward(reference, in64, route);
  EXPECT_LT(test::max_relative(out, out64), 1e-5);
  // The route changes the result (it is not the unmasked model).
  EXPECT_GT(test::max_relative(m->forward(in.x, in.t, in.y), out64), 1e-3);

  const auto weight = at::randn(out.sizes());
  (out * weight).sum().backward();
  (out64 * weight.to(at::kDouble)).sum().backward();
  const auto ours = m->named_parameters(), theirs = reference->named_parameters();
  int checked = 0;
  for (const auto& item : ours) {
    const auto& g = item.value().grad();
    const auto& g64 = theirs[item.key()].grad();
    ASSERT_EQ(g.defined(), g64.defined()) << item.key();
    if (!g.defined() || g64.abs().max().item<double>() == 0) continue;
    EXPECT_LT(test::max_relative(g, g64), 1e-4) << item.key();
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

// Finite differences of the float64 model's routed forward, for a few input elements.
TEST(TokenRoute, Float64GradientMatchesFiniteDifferences) {
  const auto config = test::small_config();
  DiT m = perturbed(config);
  m->to(at::kDouble);
  auto in = inputs(config, 2, at::kDouble);
  const auto route = route_from_noise(at::rand({2, config.num_patches()}), 0.5, 0, 2);
  const auto weight = at::randn({2, config.in_channels, config.input_size, config.input_size},
                                at::kDouble);
  auto loss = [&](const at::Tensor& x) {
    return (m->forward(x, in.t, in.y, nullptr, &route) * weight).sum();
  };
  auto x = in.x.clone().requires_grad_(true);
  const auto grad = torch::autograd::grad({loss(x)}, {x})[0];
  const double h = 1e-6;
  for (const int64_t flat : {0, 37, 101, 200, 255}) {
    auto plus = in.x.clone(), minus = in.x.clone();
    plus.view(-1)[flat] += h;
    minus.view(-1)[flat] -= h;
    const double numeric = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * h);
    EXPECT_NEAR(grad.view(-1)[flat].item<double>(), numeric, 1e-6 + 1e-5 * std::abs(numeric))
        << "element " << flat;
  }
}

TEST(TokenRoute, NotWithAMaskAndNotPastTheLastBlock) {
  const auto config = test::small_config();
  DiT m(config);
  const auto in = inputs(config, 1);
  const auto mask = sample_mask(1, config.num_patches(), 0.5);
  const auto route = route_from_noise(at::rand({1, config.num_patches()}), 0.5, 0, 1);
  EXPECT_THROW(m->forward(in.x, in.t, in.y, &mask, &route), c10::Error);
  const auto too_deep = route_from_noise(at::rand({1, config.num_patches()}), 0.5, 0, config.depth);
  EXPECT_THROW(m->forward(in.x, in.t, in.y, nullptr, &too_deep), c10::Error);
}

// TREAD's count: T - int(T * ratio) stay; the smallest noise stays, as in the official get_mask.
TEST(TokenRoute, KeepsTheTokensOfSmallestNoise) {
  EXPECT_EQ(routed_tokens(256, 0.5), 128);
  EXPECT_EQ(routed_tokens(10, 0.33), 7);  // int(3.3) = 3 leave
  const auto noise = at::tensor({0.9f, 0.1f, 0.5f, 0.3f}).view({1, 4});
  const auto route = route_from_noise(noise, 0.5, 0, 0);
  EXPECT_TRUE(at::equal(route.ids_keep, at::tensor({1, 3}, at::kLong).view({1, 2})));
}

// FLOPs: a route over every backbone block costs what deferred masking at the same ratio costs,
// plus the final layer (and the mixer's output map) on the tokens masking drops.
TEST(TokenRoute, FlopsOfAFullRouteAgainstMasking) {
  const auto c = MicroDiT_Tiny_2();
  const int64_t B = 4, T = c.num_patches();
  const double ratio = 0.75;
  ASSERT_EQ(routed_tokens(T, ratio), kept_tokens(T, ratio));
  StepShape masked{B, ratio, 77};
  StepShape routed{B, 0, 77, ratio, 0, c.depth - 1};
  const double dropped = static_cast<double>(B * (T - kept_tokens(T, ratio)));
  const double patch_out = c.patch_size * c.patch_size * c.in_channels;
  double extra = 2 * dropped * c.dim * patch_out;                                 // final linear
  if (c.patch_mixer_dim != c.dim) extra += 2 * dropped * c.patch_mixer_dim * c.dim;  // map_xout
  EXPECT_NEAR(forward_flops(c, routed), forward_flops(c, masked) + extra,
              1e-9 * forward_flops(c, masked));
  StepShape empty{B, 0, 77, ratio, 3, 2};
  EXPECT_EQ(forward_flops(c, empty), forward_flops(c, StepShape{B, 0, 77}));
}

}  // namespace
}  // namespace microdit::model
