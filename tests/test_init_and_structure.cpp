// The official initialisation, checked by statistics of each layer (the reference tensors use
// random weights and cannot show it), and structural facts: LayerNorm eps and bias, GELU kinds.
#include <gtest/gtest.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>

#include "microdit/io/safetensors.h"
#include "microdit/model/microdit.h"
#include "microdit/model/pos_embed.h"
#include "microdit/nn/init.h"
#include "microdit/nn/norm.h"
#include "test_support.h"

namespace microdit {
namespace {

// Large enough that sample statistics are tight.
model::DiTConfig init_config() {
  auto c = test::small_config();
  c.dim = 256;
  c.head_dim = 32;
  c.patch_mixer_dim = 192;
  c.caption_channels = 128;
  c.depth = 4;
  return c;
}

class Init : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::manual_seed(0);
    dit_ = new model::DiT(init_config());
    for (const auto& item : (*dit_)->named_parameters()) params_[item.key()] = item.value();
  }
  static void TearDownTestSuite() { delete dit_; }

  static at::Tensor p(const std::string& name) {
    auto it = params_.find(name);
    if (it == params_.end()) throw std::runtime_error("no parameter " + name);
    return it->second.detach();
  }
  static double stdev(const at::Tensor& t) { return t.std().item<double>(); }
  static double maxabs(const at::Tensor& t) { return t.abs().max().item<double>(); }
  static bool zero(const at::Tensor& t) { return maxabs(t) == 0.0; }

  // Truncated normal: std within 5%, nothing beyond +-2, mean near 0.
  static void expect_trunc_normal(const std::string& name, double std) {
    auto t = p(name);
    EXPECT_NEAR(stdev(t), std, 0.05 * std) << name;
    EXPECT_LE(maxabs(t), 2.0) << name;
    EXPECT_NEAR(t.mean().item<double>(), 0.0, 5 * std / std::sqrt(t.numel())) << name;
  }
  static void expect_xavier(const std::string& name) {
    auto t = p(name);
    const double fan_out = t.size(0), fan_in = t.numel() / fan_out;
    const double bound = std::sqrt(6.0 / (fan_in + fan_out));
    EXPECT_LE(maxabs(t), bound) << name;
    EXPECT_NEAR(stdev(t), bound / std::sqrt(3.0), 0.05 * bound) << name;
  }

  static inline model::DiT* dit_ = nullptr;
  static inline std::map<std::string, at::Tensor> params_;
};

TEST_F(Init, EmbedderMLPsAreNormal002) {
  for (const char* name : {"t_embedder.mlp.0.weight", "t_embedder.mlp.2.weight",
                           "pooled_y_emb_process.fc1.weight", "pooled_y_emb_process.fc2.weight",
                           "y_embedder.y_proj.fc1.weight", "y_embedder.y_proj.fc2.weight"}) {
    EXPECT_NEAR(stdev(p(name)), 0.02, 0.001) << name;
  }
}

TEST_F(Init, LinearBiasesAreZeroAndNormsOne) {
  for (const auto& [name, t] : params_) {
    const bool is_bias = name.size() > 5 && name.substr(name.size() - 5) == ".bias";
    if (is_bias && name != "x_embedder.proj.bias") {
      EXPECT_TRUE(zero(t)) << name;
    }
    if (name.find("norm") != std::string::npos && name.find(".weight") != std::string::npos) {
      EXPECT_TRUE((t == 1).all().item<bool>()) << name;
    }
  }
}

TEST_F(Init, PatchEmbedding) {
  expect_xavier("x_embedder.proj.weight");  // xavier on the flattened (D, C*p*p) view
  auto bias = p("x_embedder.proj.bias");    // PyTorch's conv default: U(+-1/sqrt(C*p*p))
  EXPECT_LE(maxabs(bias), 1.0 / std::sqrt(4 * 2 * 2));
  EXPECT_FALSE(zero(bias));
}

TEST_F(Init, BackboneBlocksUseDepthScaledStd) {
  for (int i = 0; i < 4; ++i) {
    const auto b = "blocks." + std::to_string(i) + ".";
    const double std_b = 0.02 / std::sqrt(2.0 * (i + 1));
    expect_trunc_normal(b + "attn.qkv.weight", 0.02);
    expect_trunc_normal(b + "cross_attn.q_linear.weight", 0.02);
    expect_trunc_normal(b + "cross_attn.kv_linear.weight", 0.02);
    expect_trunc_normal(b + "attn.proj.weight", std_b);
    expect_trunc_normal(b + "cross_attn.proj.weight", std_b);
    const bool moe = i == 1;
    if (moe) {
      expect_trunc_normal(b + "mlp.gate.weight", 0.02);
      expect_trunc_normal(b + "mlp.w1", 0.02);
      expect_trunc_normal(b + "mlp.w2", std_b);
    } else {
      expect_trunc_normal(b + "mlp.w1.weight", 0.02);
      expect_trunc_normal(b + "mlp.w2.weight", std_b);
      expect_trunc_normal(b + "mlp.w3.weight", std_b);
    }
    EXPECT_TRUE(zero(p(b + "adaLN_modulation.1.weight"))) << b;
  }
}

TEST_F(Init, MixerBlocksUseBackboneDepthStd) {
  const double std_m = 0.02 / std::sqrt(2.0 * 4);
  for (int i = 0; i < 2; ++i) {
    const auto b = "patch_mixer." + std::to_string(i) + ".";
    expect_trunc_normal(b + "attn.qkv.weight", 0.02);
    expect_trunc_normal(b + "attn.proj.weight", std_m);
    expect_trunc_normal(b + (i == 1 ? "mlp.w2" : "mlp.w3.weight"), std_m);
    EXPECT_TRUE(zero(p(b + "adaLN_modulation.1.weight"))) << b;
  }
  for (const char* name : {"patch_mixer_map_xin.1.weight", "patch_mixer_map_xout.1.weight",
                           "patch_mixer_map_y.1.weight"}) {
    expect_xavier(name);
  }
}

TEST_F(Init, CaptionBlockAndOutputLayers) {
  expect_trunc_normal("y_emb_preprocess.attn.qkv.weight", 0.02);
  expect_trunc_normal("y_emb_preprocess.mlp.w1.weight", 0.02);
  expect_trunc_normal("y_emb_preprocess.mlp.w2.weight", 0.02);
  EXPECT_TRUE(zero(p("y_emb_preprocess.attn.proj.weight")));
  EXPECT_TRUE(zero(p("y_emb_preprocess.mlp.w3.weight")));
  EXPECT_TRUE(zero(p("final_layer.linear.weight")));
  EXPECT_TRUE(zero(p("final_layer.adaLN_modulation.1.weight")));
  EXPECT_TRUE(zero((*dit_)->mask_token));
}

TEST(TruncNormal, BoundsAreAbsoluteAndStdIsTheTruncatedOne) {
  at::manual_seed(1);
  auto t = at::empty({200000});
  nn::trunc_normal_(t, 0.0, 1.5);
  EXPECT_LE(t.abs().max().item<double>(), 2.0);
  // Std of N(0, 1.5) truncated to [-2, 2]: 1.5 * sqrt(1 - 2 a phi(a) / (2 Phi(a) - 1)), a = 4/3.
  const double a = 2.0 / 1.5;
  const double phi = std::exp(-a * a / 2) / std::sqrt(2 * M_PI);
  const double Z = std::erf(a / std::sqrt(2.0));
  EXPECT_NEAR(t.std().item<double>(), 1.5 * std::sqrt(1 - 2 * a * phi / Z), 0.01);
}

TEST(Structure, EveryLayerNormHasEps1e6AndNoBias) {
  model::DiT dit(test::small_config());
  int norms = 0;
  for (const auto& item : dit->named_modules()) {
    if (const auto* ln = item.value()->as<nn::LayerNorm>()) {
      EXPECT_EQ(ln->eps, 1e-6) << item.key();
      ++norms;
    }
    EXPECT_EQ(item.value()->as<torch::nn::LayerNorm>(), nullptr) << item.key() << " has a bias";
  }
  // 3 per block (6) + 2 QK norms per attention (2 per block, 1 caption) + caption block 2 +
  // y_embedder 1 + pooled 1 + mixer maps 3 + final 1.
  EXPECT_EQ(norms, 6 * 3 + (6 * 4 + 2) + 2 + 1 + 1 + 3 + 1);
}

TEST(Structure, ModulationAndEmbedderMLPsUseTanhGELU) {
  model::DiT dit(test::small_config());
  auto tanh_gelu = [](torch::nn::Sequential& seq, size_t index) {
    auto* gelu = seq[index]->as<torch::nn::GELU>();
    return gelu != nullptr && gelu->options.approximate() == "tanh";
  };
  EXPECT_TRUE(tanh_gelu(dit->t_embedder->mlp, 1));
  EXPECT_TRUE(tanh_gelu(dit->final_layer->adaLN_modulation, 0));
  for (const auto& block : *dit->blocks) {
    EXPECT_TRUE(tanh_gelu(block->as<nn::DiTBlock>()->adaLN_modulation, 0));
  }
  // Mlp (caption projection, pooled caption): fc2(norm(gelu_tanh(fc1 x))).
  auto& mlp = dit->pooled_y_emb_process;
  auto x = at::randn({3, 64});
  at::NoGradGuard no_grad;
  mlp->fc1->weight.normal_();
  auto expected = mlp->fc2(mlp->norm(at::gelu(mlp->fc1(x), "tanh")));
  EXPECT_TRUE(at::allclose(mlp(x), expected));
  EXPECT_FALSE(at::allclose(mlp(x), mlp->fc2(mlp->norm(at::gelu(mlp->fc1(x)))), 1e-6, 1e-7));
}

// The 2-D sin-cos formula of the spec, written independently of pos_embed.cpp.
double formula(int64_t token, int64_t channel, int64_t D, int64_t g, double scale, int64_t base) {
  const int64_t row = token / g, col = token % g;
  const int64_t quarter = D / 4;
  const int64_t half_index = channel / (D / 2);  // 0: column, 1: row
  const int64_t within = channel % (D / 2);
  const bool is_cos = within >= quarter;
  const int64_t i = within % quarter;
  const float c = static_cast<float>(half_index == 0 ? col : row) /
                  (static_cast<float>(g) / static_cast<float>(base)) / static_cast<float>(scale);
  const double w = std::pow(10000.0, -static_cast<double>(i) / quarter);
  return is_cos ? std::cos(c * w) : std::sin(c * w);
}

TEST(PosEmbed, MatchesTheOfficialBuffer) {
  // The reference weights hold the buffer the official code computed.
  const auto& c = test::reference_set().config;
  auto ours = model::sincos_pos_embed_2d(c.dim, c.grid_size(), 1.0, c.grid_size());
  auto official =
      io::load_safetensors(test::reference_dir() / "weights.safetensors").at("pos_embed");
  EXPECT_LE(parity::relative_error(ours, official), 1e-6);
}

TEST(PosEmbed, FormulaAt512WithInterpolationScale2) {
  const int64_t D = 64, g = 32;  // 512 px: latent 64, patch 2, base_size 32, pos_interp_scale 2
  auto ours = model::sincos_pos_embed_2d(D, g, 2.0, g);
  ASSERT_EQ(ours.sizes(), (at::IntArrayRef{1, g * g, D}));
  auto expected = at::empty({1, g * g, D}, at::kDouble);
  for (int64_t t = 0; t < g * g; ++t)
    for (int64_t ch = 0; ch < D; ++ch) expected[0][t][ch] = formula(t, ch, D, g, 2.0, g);
  EXPECT_LE(parity::relative_error(ours, expected), 1e-6);
  // Both resolutions span the same coordinate range: the last 512 px token is at 15.5.
  EXPECT_NEAR(ours[0][g * g - 1][D / 4 - 0].item<double>(), std::cos(15.5), 1e-6);
}

}  // namespace
}  // namespace microdit
