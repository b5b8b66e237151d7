// Shapes and behaviour of each building block.
#include <gtest/gtest.h>

#include <map>

#include "microdit/model/block_plan.h"
#include "microdit/model/masking.h"
#include "microdit/model/microdit.h"
#include "microdit/model/state_dict_shapes.h"
#include "microdit/nn/attention.h"
#include "microdit/nn/dit_block.h"
#include "microdit/nn/embedders.h"
#include "microdit/nn/expert_choice_moe.h"
#include "microdit/nn/feed_forward.h"
#include "test_support.h"

namespace microdit {
namespace {

TEST(Modules, PatchEmbedMakesOneTokenPerPatch) {
  nn::PatchEmbed embed(4, 32, 2);
  EXPECT_EQ(embed(at::randn({3, 4, 8, 8})).sizes(), (at::IntArrayRef{3, 16, 32}));
}

TEST(Modules, TimestepEmbeddingIsCosThenSin) {
  auto t = at::tensor({0.5f, -1.0f});
  auto e = nn::TimestepEmbedderImpl::timestep_embedding(t, 512);
  ASSERT_EQ(e.sizes(), (at::IntArrayRef{2, 512}));
  const double f3 = std::exp(-std::log(10000.0) * 3 / 256);
  EXPECT_NEAR(e[0][3].item<double>(), std::cos(0.5 * f3), 1e-6);
  EXPECT_NEAR(e[0][256 + 3].item<double>(), std::sin(0.5 * f3), 1e-6);
  nn::TimestepEmbedder embedder(64);
  EXPECT_EQ(embedder(t).sizes(), (at::IntArrayRef{2, 64}));
}

TEST(Modules, AttentionKeepsShapes) {
  nn::SelfAttention attn(nn::AttentionOptions{64, 32, 2});
  EXPECT_EQ(attn(at::randn({2, 10, 64})).sizes(), (at::IntArrayRef{2, 10, 64}));
  nn::CrossAttention cross(nn::AttentionOptions{64, 64, 4});
  EXPECT_EQ(cross(at::randn({2, 10, 64}), at::randn({2, 7, 64})).sizes(),
            (at::IntArrayRef{2, 10, 64}));
}

TEST(Modules, AttentionWidthRoundsUpToTwoHeads) {
  EXPECT_EQ(nn::qkv_hidden_dim(1024, 1.0, 64), 1024);
  EXPECT_EQ(nn::qkv_hidden_dim(1024, 0.5, 64), 512);
  EXPECT_EQ(nn::qkv_hidden_dim(1024, 0.5185185185185185, 64), 640);  // int(531.0) -> 640
  EXPECT_EQ(nn::qkv_hidden_dim(64, 0.6, 16), 64);                    // int(38.4) -> 64
}

TEST(Modules, SwiGLUHiddenWidth) {
  EXPECT_EQ(nn::swiglu_hidden_dim(32, 32), 32);  // int(21.3) -> 32
  EXPECT_EQ(nn::swiglu_hidden_dim(4096, 256), 2816);
  nn::FeedForward ff(64, 256, 32, false);
  EXPECT_EQ(ff->w1->weight.sizes(), (at::IntArrayRef{192, 64}));
  EXPECT_EQ(ff(at::randn({2, 5, 64})).sizes(), (at::IntArrayRef{2, 5, 64}));
}

TEST(ExpertChoiceMoE, EachExpertTakesExactlyKTokens) {
  nn::FeedForwardECMoe moe(4, 2.0, 16, 32, 8);
  auto x = at::randn({3, 10, 16});
  const auto routing = moe->route(x);
  EXPECT_EQ(moe->tokens_per_expert(10), 5);  // int(2.0 * 10 / 4)
  EXPECT_EQ(routing.indices.sizes(), (at::IntArrayRef{3, 4, 5}));
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t e = 0; e < 4; ++e) {
      EXPECT_EQ(std::get<0>(at::_unique(routing.indices[b][e])).numel(), 5);
    }
  }
}

TEST(ExpertChoiceMoE, OutputIsTheProbabilityWeightedSumOfChoosingExperts) {
  nn::FeedForwardECMoe moe(3, 1.0, 8, 16, 8);
  auto x = at::randn({2, 6, 8});
  at::NoGradGuard no_grad;
  auto out = moe(x);
  auto probs = at::softmax(moe->gate(x), -1);
  const auto routing = moe->route(x);
  auto expected = at::zeros_like(x);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t e = 0; e < 3; ++e) {
      for (int64_t k = 0; k < routing.indices.size(2); ++k) {
        const auto t = routing.indices[b][e][k].item<int64_t>();
        auto h = at::gelu(at::matmul(x[b][t], moe->w1[e]));  // exact (erf) GELU
        expected[b][t] += probs[b][t][e] * at::matmul(h, moe->w2[e]);
      }
    }
  }
  EXPECT_TRUE(at::allclose(out, expected, 1e-5, 1e-6));
  // Tokens that no expert chose get exactly zero.
  auto chosen = at::zeros({2, 6}, at::kBool);
  for (int64_t b = 0; b < 2; ++b) chosen[b].index_fill_(0, routing.indices[b].flatten(), true);
  ASSERT_LT(chosen.sum().item<int64_t>(), 12) << "with capacity 1 and 3 experts some go unchosen";
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 6; ++t) {
      if (!chosen[b][t].item<bool>()) EXPECT_EQ(out[b][t].abs().max().item<float>(), 0.0f);
    }
  }
  // The tanh-approximate GELU would give a different result.
  EXPECT_FALSE(at::allclose(at::gelu(x, "tanh"), at::gelu(x), 1e-7, 1e-7));
}

TEST(BlockPlan, MoEPlacementDiffersBetweenBackboneAndMixer) {
  // Backbone: (i+1) % 2 == 0, never the last block.
  EXPECT_EQ(model::backbone_moe_blocks(6, 2), (std::vector<bool>{0, 1, 0, 1, 0, 0}));
  EXPECT_EQ(model::backbone_moe_blocks(5, 2), (std::vector<bool>{0, 1, 0, 1, 0}));
  // Mixer: from block 1; the last block can be MoE (XL mixer: blocks 1, 3, 5).
  EXPECT_EQ(model::mixer_moe_blocks(6, 2), (std::vector<bool>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(model::mixer_moe_blocks(2, 2), (std::vector<bool>{0, 1}));
  const auto xl = model::MicroDiT_XL_2();
  const auto mixer = model::mixer_blocks(xl);
  ASSERT_EQ(mixer.size(), 6u);
  EXPECT_TRUE(mixer[5].moe);
  EXPECT_FALSE(model::backbone_blocks(xl).back().moe);
}

TEST(BlockPlan, ShortRatioListsRepeat) {
  EXPECT_EQ(model::expand_ratios({1.0, 2.0}, 4), (std::vector<double>{1, 1, 2, 2}));
  EXPECT_THROW(model::expand_ratios({1.0, 2.0}, 5), std::invalid_argument);
  const auto lin = model::numpy_linspace(0.5, 4.0, 28);
  EXPECT_EQ(lin.front(), 0.5);
  EXPECT_EQ(lin.back(), 4.0);
  EXPECT_EQ(lin[3], 3 * (3.5 / 27) + 0.5);
}

TEST(Zoo, ParameterCountsMatchThePaper) {
  EXPECT_EQ(model::count_parameters(model::MicroDiT_XL_2()), 1165442320);
  EXPECT_EQ(model::count_parameters(model::MicroDiT_Tiny_2()), 200692752);
  EXPECT_THROW(model::zoo_config("MicroDiT_Huge_2"), std::invalid_argument);
}

// The analytic state dict (names, shapes, parameter or buffer) against built models.
TEST(Zoo, StateDictShapesMatchBuiltModels) {
  auto no_mixer = test::small_config();
  no_mixer.use_bias = true;
  no_mixer.use_patch_mixer = false;
  auto wide_mixer = test::small_config();
  wide_mixer.patch_mixer_dim = wide_mixer.dim;
  for (const auto& c : {test::small_config(), model::MicroDiT_Tiny_2(), no_mixer, wide_mixer}) {
    model::DiT dit(c);
    std::map<std::string, std::pair<std::vector<int64_t>, bool>> built;
    for (const auto& p : dit->named_parameters()) built[p.key()] = {p.value().sizes().vec(), true};
    for (const auto& b : dit->named_buffers()) built[b.key()] = {b.value().sizes().vec(), false};
    std::map<std::string, std::pair<std::vector<int64_t>, bool>> analytic;
    for (const auto& t : model::state_dict_shapes(c)) analytic[t.name] = {t.shape, t.parameter};
    EXPECT_EQ(analytic, built);
    EXPECT_EQ(dit->num_parameters(), model::count_parameters(c));
  }
}

TEST(Zoo, WeightsOfAnotherArchitectureAreOneLine) {
  const auto c = test::small_config();
  io::TensorMap tensors;
  for (const auto& t : model::state_dict_shapes(c)) tensors[t.name] = at::zeros(t.shape);
  EXPECT_NO_THROW(model::check_state_dict_shapes(c, tensors, "w.safetensors"));
  auto wider_captions = c;
  wider_captions.caption_channels += 8;
  try {
    model::check_state_dict_shapes(wider_captions, tensors, "w.safetensors");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_TRUE(message.starts_with("w.safetensors: the weights are not of this model")) << message;
    EXPECT_TRUE(message.ends_with("1 difference from its state dict, the first: "
                                  "y_embedder.y_proj.fc1.weight is [64,24], the model's is [64,32]"))
        << message;
  }
  tensors["x_embedder.proj.bias"] = at::zeros({3});
  tensors["extra"] = at::zeros({1});
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { model::check_state_dict_shapes(c, tensors, "w.pt"); }, "w.pt: ",
      {"2 differences", "x_embedder.proj.bias is [3], the model's is [" +
                            std::to_string(c.dim) + "]"}));
}

TEST(Masking, KeepThenRestoreRoundTrips) {
  const auto mask = model::sample_mask(3, 16, 0.75);
  EXPECT_EQ(mask.ids_keep.sizes(), (at::IntArrayRef{3, 4}));
  EXPECT_EQ(mask.mask.sum().item<float>(), 3 * 12);
  auto x = at::randn({3, 16, 5});
  auto kept = model::keep_tokens(x, mask);
  auto token = at::full({1, 1, 5}, -7.0f);
  auto restored = model::restore_tokens(kept, mask, token);
  auto removed = mask.mask.to(at::kBool).unsqueeze(-1).expand_as(x);
  EXPECT_TRUE(at::equal(restored.masked_select(~removed), x.masked_select(~removed)));
  EXPECT_TRUE((restored.masked_select(removed) == -7.0f).all().item<bool>());
}

TEST(Masking, SamplingFollowsTheGenerator) {
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(42);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(42);
  EXPECT_TRUE(at::equal(model::sample_mask(2, 16, 0.5, g1).ids_keep,
                        model::sample_mask(2, 16, 0.5, g2).ids_keep));
  EXPECT_EQ(model::kept_tokens(256, 0.75), 64);
}

TEST(MicroDiT, ShapesMaskedAndUnmasked) {
  auto c = test::small_config();
  model::DiT dit(c);
  auto x = at::randn({2, 4, 8, 8});
  auto t = at::randn({2});
  auto y = at::randn({2, 1, 7, 24});
  EXPECT_EQ(dit->forward(x, t, y).sizes(), x.sizes());
  const auto mask = model::sample_mask(2, 16, 0.75);
  EXPECT_EQ(dit->forward(x, t, y, &mask).sizes(), x.sizes());
  EXPECT_EQ(dit->forward_with_cfg(x, at::randn({1}), y, 4.0).sizes(), x.sizes());
}

TEST(MicroDiT, MaskedPositionsHoldTheMaskToken) {
  auto c = test::small_config();
  model::DiT dit(c);
  for (auto& p : dit->parameters()) p.data().normal_(0, 0.1);  // make the output non-trivial
  dit->mask_token.fill_(3.0f);
  auto mask = model::sample_mask(1, 16, 0.75);
  auto out = dit->forward(at::randn({1, 4, 8, 8}), at::randn({1}), at::randn({1, 7, 24}), &mask);
  // Patch (r, k) covers out[:, :, 2r:2r+2, 2k:2k+2].
  for (int64_t token = 0; token < 16; ++token) {
    auto patch = out[0].narrow(1, 2 * (token / 4), 2).narrow(2, 2 * (token % 4), 2);
    const bool removed = mask.mask[0][token].item<float>() == 1.0f;
    EXPECT_EQ((patch == 3.0f).all().item<bool>(), removed) << "token " << token;
  }
}

TEST(MicroDiT, NaiveMaskingWithoutMixer) {
  auto c = test::small_config();
  c.use_patch_mixer = false;
  model::DiT dit(c);
  for (const auto& item : dit->named_parameters()) {
    EXPECT_EQ(item.key().rfind("patch_mixer", 0), std::string::npos) << item.key();
  }
  const auto mask = model::sample_mask(2, 16, 0.5);
  EXPECT_EQ(
      dit->forward(at::randn({2, 4, 8, 8}), at::randn({2}), at::randn({2, 7, 24}), &mask).sizes(),
      (at::IntArrayRef{2, 4, 8, 8}));
}

TEST(MicroDiT, UnpatchifyInvertsPatchOrder) {
  auto c = test::small_config();
  model::DiT dit(c);
  // Token r*4+k, channel layout (p, q, c): value encodes all four indices.
  auto tokens = at::zeros({1, 16, 16});
  for (int64_t t = 0; t < 16; ++t)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t q = 0; q < 2; ++q)
        for (int64_t ch = 0; ch < 4; ++ch)
          tokens[0][t][(p * 2 + q) * 4 + ch] = t * 100 + p * 10 + q + ch * 1000;
  auto img = dit->unpatchify(tokens);
  EXPECT_EQ(img[0][2][2 * 1 + 1][2 * 3 + 0].item<float>(), 2000 + 7 * 100 + 10);  // r1 k3 p1 q0
}

TEST(MicroDiT, RejectsInconsistentConfigs) {
  auto c = test::small_config();
  c.dim = 60;  // not a multiple of head_dim 16
  EXPECT_THROW(model::DiT{c}, std::invalid_argument);
  c = test::small_config();
  c.ffn_multipliers = {1.0, 2.0, 3.0};
  EXPECT_THROW(model::DiT{c}, std::invalid_argument);
}

}  // namespace
}  // namespace microdit
