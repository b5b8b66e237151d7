// AutoencoderKL against diffusers: tests/data/vae/ was written by
// scripts/reference/make_vae_reference.py (diffusers AutoencoderKL, random weights, float32).
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "test_support.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "microdit/encoders/autoencoder_kl.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"

namespace microdit {
namespace {

using encoders::AutoencoderKL;
using encoders::AutoencoderKLConfig;

const std::filesystem::path kDataDir =
    test::source_dir() / "tests/data/vae";
constexpr double kTolerance = 1e-4;  // ||ours - reference|| / ||reference||

double relative_error(const at::Tensor& ours, const at::Tensor& reference) {
  return (ours.to(at::kDouble) - reference.to(at::kDouble)).norm().item<double>() /
         reference.to(at::kDouble).norm().item<double>();
}

// Checks shape and relative error, and records the error in the test's XML properties.
void expect_close(const at::Tensor& ours, const at::Tensor& reference, const std::string& what) {
  ASSERT_EQ(ours.sizes(), reference.sizes()) << what;
  const double error = relative_error(ours, reference);
  ::testing::Test::RecordProperty("rel_err_" + what, c10::str(error));
  EXPECT_LE(error, kTolerance) << what;
}

// A diffusers test model and its reference tensors, loaded once.
struct Fixture {
  AutoencoderKL vae{nullptr};
  io::TensorMap ref;
  const at::Tensor& operator[](const std::string& key) const { return ref.at(key); }
};

Fixture& fixture(const std::string& name) {
  static std::map<std::string, Fixture> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    Fixture f{encoders::load_pretrained_autoencoder(kDataDir / name),
              io::load_safetensors(kDataDir / name / "reference.safetensors")};
    it = cache.emplace(name, std::move(f)).first;
  }
  return it->second;
}

TEST(AutoencoderKL, ParameterNamesAndShapesEqualDiffusers) {
  for (const char* name : {"sdxl", "kl_f8_d16", "no_quant_no_attn"}) {
    SCOPED_TRACE(name);
    const auto config =
        AutoencoderKLConfig::from_json_file(kDataDir / c10::str("config_", name, ".json"));
    AutoencoderKL vae(config);
    const auto ours = io::state_dict(*vae);
    const io::Json keys = io::read_json_file(kDataDir / c10::str("keys_", name, ".json"));
    EXPECT_EQ(ours.size(), keys.size());
    for (const auto& [key, shape] : keys.items()) {
      const auto it = ours.find(key);
      ASSERT_NE(it, ours.end()) << "we have no parameter named " << key;
      std::vector<int64_t> expected;
      for (const io::Json& d : shape) expected.push_back(d.get<int64_t>());
      EXPECT_EQ(it->second.sizes(), at::IntArrayRef(expected)) << key;
    }
  }
}

TEST(AutoencoderKL, PresetsEqualTheDiffusersConfigs) {
  const auto expect_same = [](const AutoencoderKLConfig& a, const AutoencoderKLConfig& b) {
    EXPECT_EQ(a.in_channels, b.in_channels);
    EXPECT_EQ(a.out_channels, b.out_channels);
    EXPECT_EQ(a.latent_channels, b.latent_channels);
    EXPECT_EQ(a.block_out_channels, b.block_out_channels);
    EXPECT_EQ(a.layers_per_block, b.layers_per_block);
    EXPECT_EQ(a.norm_num_groups, b.norm_num_groups);
    EXPECT_EQ(a.sample_size, b.sample_size);
    EXPECT_DOUBLE_EQ(a.scaling_factor, b.scaling_factor);
    EXPECT_EQ(a.shift_factor, b.shift_factor);
    EXPECT_EQ(a.force_upcast, b.force_upcast);
    EXPECT_EQ(a.use_quant_conv, b.use_quant_conv);
    EXPECT_EQ(a.use_post_quant_conv, b.use_post_quant_conv);
    EXPECT_EQ(a.mid_block_add_attention, b.mid_block_add_attention);
  };
  expect_same(AutoencoderKLConfig::sdxl(),
              AutoencoderKLConfig::from_json_file(kDataDir / "config_sdxl.json"));
  expect_same(AutoencoderKLConfig::kl_f8_d16(),
              AutoencoderKLConfig::from_json_file(kDataDir / "config_kl_f8_d16.json"));
  EXPECT_EQ(AutoencoderKLConfig::sdxl().downsample_factor(), 8);
}

TEST(AutoencoderKL, ConfigJsonFieldsAndDefaults) {
  const auto d16 = AutoencoderKLConfig::from_json_file(kDataDir / "tiny_d16/config.json");
  EXPECT_EQ(d16.latent_channels, 16);
  EXPECT_EQ(d16.block_out_channels, (std::vector<int64_t>{4, 4, 8}));
  EXPECT_EQ(d16.layers_per_block, 2);
  EXPECT_EQ(d16.norm_num_groups, 2);
  EXPECT_DOUBLE_EQ(d16.scaling_factor, 0.2614);
  ASSERT_TRUE(d16.shift_factor.has_value());
  EXPECT_DOUBLE_EQ(*d16.shift_factor, 0.1);
  // Keys left out take diffusers' constructor defaults.
  const auto bare = AutoencoderKLConfig::from_json(io::parse_json("{}", "test"));
  EXPECT_EQ(bare.block_out_channels, (std::vector<int64_t>{64}));
  EXPECT_EQ(bare.layers_per_block, 1);
  EXPECT_DOUBLE_EQ(bare.scaling_factor, 0.18215);
  EXPECT_FALSE(bare.shift_factor.has_value());
}

TEST(AutoencoderKL, ConfigRejectsWhatItCannotBuild) {
  const auto error_of = [](const std::string& json) -> std::string {
    try {
      AutoencoderKLConfig::from_json(io::parse_json(json, "test"));
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of(R"({"block_out_channels":[8,16],"down_block_types":)"
                     R"(["DownEncoderBlock2D","AttnDownEncoderBlock2D"]})")
                .find("'down_block_types' entry AttnDownEncoderBlock2D is not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"act_fn":"gelu"})").find("act_fn \"gelu\""), std::string::npos);
  EXPECT_NE(error_of(R"({"block_out_channels":[8,20],"norm_num_groups":8})")
                .find("block_out_channels[1] = 20"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"layers_per_block":"two"})").find("'layers_per_block' must be an integer"),
            std::string::npos);
  // 2^(levels - 1), the downsampling factor, must be defined.
  std::string channels = "32";
  for (int i = 1; i < 17; ++i) channels += ",32";
  EXPECT_EQ(error_of(R"({"block_out_channels":[)" + channels + "]}"),
            "AutoencoderKL config: block_out_channels has 17 levels, at most 16");
}

TEST(AutoencoderKL, EncodeMatchesDiffusers) {
  for (const char* name : {"tiny", "tiny_d16"}) {
    SCOPED_TRACE(name);
    Fixture& f = fixture(name);
    at::NoGradGuard no_grad;
    const auto d = f.vae->encode(f["x"]);
    expect_close(d.mean, f["mean"], c10::str(name, "_mean"));
    expect_close(d.logvar, f["logvar"], c10::str(name, "_logvar"));
    expect_close(d.std, at::exp(0.5 * f["logvar"]), c10::str(name, "_std"));
    EXPECT_TRUE(at::equal(d.mode(), d.mean));
  }
}

TEST(AutoencoderKL, LogvarIsClampedToMinus30And20) {
  // The tiny model's quant_conv bias drives logvar channel 0 to about +50 and 1 to about -50.
  Fixture& f = fixture("tiny");
  at::NoGradGuard no_grad;
  const auto d = f.vae->encode(f["x"]);
  EXPECT_TRUE(at::all(d.logvar.select(1, 0) == 20.0).item<bool>());
  EXPECT_TRUE(at::all(d.logvar.select(1, 1) == -30.0).item<bool>());
  expect_close(d.logvar.slice(1, 2), f["logvar"].slice(1, 2), "tiny_unclamped_logvar");

  const auto moments = at::zeros({1, 8, 2, 2});
  moments.slice(1, 4, 5).fill_(100.0);
  moments.slice(1, 5, 6).fill_(-100.0);
  const auto direct = encoders::LatentDistribution::from_moments(moments);
  EXPECT_EQ(direct.logvar.max().item<double>(), 20.0);
  EXPECT_EQ(direct.logvar.min().item<double>(), -30.0);
  EXPECT_NEAR(direct.std.max().item<double>(), std::exp(10.0), 1e-2);
}

TEST(AutoencoderKL, SampleIsMeanPlusStdTimesNoise) {
  for (const char* name : {"tiny", "tiny_d16"}) {
    SCOPED_TRACE(name);
    Fixture& f = fixture(name);
    at::NoGradGuard no_grad;
    const auto d = f.vae->encode(f["x"]);
    // A seeded CPU generator draws what torch.Generator().manual_seed(1234) draws in Python.
    auto generator = at::make_generator<at::CPUGeneratorImpl>(1234);
    expect_close(d.sample(generator), f["sample"], c10::str(name, "_sample"));

    const auto eps = at::randn(d.mean.sizes());
    EXPECT_TRUE(at::allclose(d.sample_with_noise(eps), d.mean + d.std * eps));
    // Same seed, same draw; no generator still gives mean + std * N(0, I).
    EXPECT_TRUE(at::equal(d.sample(at::make_generator<at::CPUGeneratorImpl>(7)),
                          d.sample(at::make_generator<at::CPUGeneratorImpl>(7))));
  }
  // Statistically: (sample - mean) / std ~ N(0, 1).
  encoders::LatentDistribution d;
  d.mean = at::full({64, 4, 16, 16}, 3.0);
  d.logvar = at::full({64, 4, 16, 16}, std::log(0.25));
  d.std = at::exp(0.5 * d.logvar);
  const auto eps = (d.sample() - d.mean) / d.std;
  EXPECT_NEAR(eps.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(eps.std().item<double>(), 1.0, 0.01);
}

TEST(AutoencoderKL, DecodeMatchesDiffusers) {
  for (const char* name : {"tiny", "tiny_d16"}) {
    SCOPED_TRACE(name);
    Fixture& f = fixture(name);
    at::NoGradGuard no_grad;
    expect_close(f.vae->decode(f["z"]), f["decoded"], c10::str(name, "_decode"));
  }
}

TEST(AutoencoderKL, DiffusionLatentsAreShiftedAndScaled) {
  for (const char* name : {"tiny", "tiny_d16"}) {
    SCOPED_TRACE(name);
    Fixture& f = fixture(name);
    at::NoGradGuard no_grad;
    const auto latents = f.vae->encode_latents(f["x"], std::nullopt, /*sample=*/false);
    expect_close(latents, f["latents"], c10::str(name, "_latents"));
    expect_close(f.vae->decode_latents(f["latents"]), f["decoded_latents"],
                 c10::str(name, "_decode_latents"));
    const auto z = at::randn({1, f.vae->config().latent_channels, 2, 2});
    EXPECT_TRUE(at::allclose(f.vae->unscale_latents(f.vae->scale_latents(z)), z, 1e-5, 1e-6));
    auto generator = at::make_generator<at::CPUGeneratorImpl>(1234);
    const auto sampled = f.vae->encode_latents(f["x"], generator);
    expect_close(sampled, f.vae->scale_latents(f["sample"]), c10::str(name, "_sampled_latents"));
  }
}

TEST(AutoencoderKL, PerChannelLatentStatistics) {
  auto config = AutoencoderKLConfig::from_json_file(kDataDir / "tiny/config.json");
  config.latents_mean = std::vector<double>{0.1, -0.2, 0.3, 0.0};
  config.latents_std = std::vector<double>{2.0, 0.5, 1.0, 4.0};
  AutoencoderKL vae(config);
  const auto z = at::randn({2, 4, 3, 3});
  const auto mean = at::tensor({0.1, -0.2, 0.3, 0.0}, at::kFloat).view({1, 4, 1, 1});
  const auto stdev = at::tensor({2.0, 0.5, 1.0, 4.0}, at::kFloat).view({1, 4, 1, 1});
  EXPECT_TRUE(at::allclose(vae->scale_latents(z), (z - mean) * config.scaling_factor / stdev));
  EXPECT_TRUE(at::allclose(vae->unscale_latents(vae->scale_latents(z)), z, 1e-5, 1e-6));
}

TEST(AutoencoderKL, SlicedDecodeEqualsFullDecode) {
  Fixture& f = fixture("tiny");
  at::NoGradGuard no_grad;
  const auto z = at::cat({f["z"], f["z"].flip(0), f["z"] * 0.5});  // batch 6
  const auto full = f.vae->decode(z);
  for (int64_t slice : {1, 4, 6, 10}) {
    const auto sliced = f.vae->decode_sliced(z, slice);
    EXPECT_LE(relative_error(sliced, full), 1e-6) << "slice_size " << slice;
  }
  EXPECT_THROW(f.vae->decode_sliced(z, 0), c10::Error);
}

TEST(AutoencoderKL, TiledEncodeAndDecodeMatchDiffusers) {
  Fixture& f = fixture("tiny");  // sample_size 16: 16x16 image tiles, 8x8 latent tiles
  at::NoGradGuard no_grad;
  const auto d = f.vae->encode_tiled(f["tiled_x"]);
  expect_close(d.mean, f["tiled_mean"], "tiny_tiled_mean");
  expect_close(d.logvar, f["tiled_logvar"], "tiny_tiled_logvar");
  expect_close(f.vae->decode_tiled(f["tiled_z"]), f["tiled_decoded"], "tiny_tiled_decode");
  // Inputs within one tile are not tiled.
  EXPECT_TRUE(at::equal(f.vae->decode_tiled(f["z"]), f.vae->decode(f["z"])));
}

TEST(AutoencoderKL, RejectsImagesOfTheWrongShape) {
  Fixture& f = fixture("tiny_d16");  // f = 4
  at::NoGradGuard no_grad;
  EXPECT_THROW(f.vae->encode(at::zeros({1, 3, 18, 16})), c10::Error);
  EXPECT_THROW(f.vae->encode(at::zeros({1, 4, 16, 16})), c10::Error);
  EXPECT_THROW(f.vae->decode(at::zeros({1, 4, 4, 4})), c10::Error);
}

// ---- loading ----------------------------------------------------------------------------------

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("microdit_vae_" + name);
}

std::string load_error(AutoencoderKL& vae, const std::filesystem::path& path) {
  try {
    encoders::load_autoencoder_weights(vae, path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(AutoencoderKL, MissingWeightIsNamedAndNothingIsLoaded) {
  const auto dir = kDataDir / "tiny";
  auto weights = io::load_safetensors(dir / "diffusion_pytorch_model.safetensors");
  const std::string dropped = "decoder.up_blocks.1.resnets.0.conv_shortcut.weight";
  ASSERT_EQ(weights.erase(dropped), 1u);
  const auto path = temp_file("missing.safetensors");
  io::save_safetensors(path, weights);

  AutoencoderKL vae(AutoencoderKLConfig::from_json_file(dir / "config.json"));
  const auto before = io::state_dict(*vae);
  std::map<std::string, at::Tensor> snapshot;
  for (const auto& [name, t] : before) snapshot[name] = t.clone();
  const std::string message = load_error(vae, path);
  EXPECT_NE(message.find("missing key " + dropped + " (model expects shape [8,12,1,1])"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  for (const auto& [name, t] : io::state_dict(*vae)) {
    EXPECT_TRUE(at::equal(t, snapshot.at(name))) << name << " was modified by a failed load";
  }
  std::filesystem::remove(path);
}

TEST(AutoencoderKL, WeightsOfAnotherConfigAreRejectedByName) {
  auto config = AutoencoderKLConfig::from_json_file(kDataDir / "tiny/config.json");
  config.latent_channels = 16;
  AutoencoderKL vae(config);
  const std::string message =
      load_error(vae, kDataDir / "tiny/diffusion_pytorch_model.safetensors");
  EXPECT_NE(message.find("quant_conv.weight has shape [8,8,1,1], model expects [32,32,1,1]"),
            std::string::npos)
      << message;
  EXPECT_NE(load_error(vae, kDataDir / "tiny/config.json").find("unknown weight format '.json'"),
            std::string::npos);
}

TEST(AutoencoderKL, TorchSaveBinLoadsAsTheSafetensorsDo) {
  // diffusion_pytorch_model.fp16.bin is torch.save of the same state dict in float16.
  const auto dir = kDataDir / "tiny";
  AutoencoderKL vae(AutoencoderKLConfig::from_json_file(dir / "config.json"));
  encoders::load_autoencoder_weights(vae, dir / "diffusion_pytorch_model.fp16.bin");
  const auto reference = io::load_safetensors(dir / "diffusion_pytorch_model.safetensors");
  const auto loaded = io::state_dict(*vae);
  ASSERT_EQ(loaded.size(), reference.size());
  for (const auto& [name, t] : reference) {
    EXPECT_EQ(loaded.at(name).dtype(), at::kFloat) << name;
    EXPECT_TRUE(at::equal(loaded.at(name), t.to(at::kHalf).to(at::kFloat))) << name;
  }
}

TEST(AutoencoderKL, LegacyAttentionKeysAreUpgraded) {
  const auto dir = kDataDir / "tiny";
  auto weights = io::load_safetensors(dir / "diffusion_pytorch_model.safetensors");
  io::TensorMap legacy;
  const std::pair<std::string, std::string> renames[] = {
      {"to_q.", "query."}, {"to_k.", "key."}, {"to_v.", "value."}, {"to_out.0.", "proj_attn."}};
  for (const auto& [key, t] : weights) {
    std::string name = key;
    at::Tensor value = t;
    for (const auto& [from, to] : renames) {
      const auto pos = name.find(".attentions.0." + from);
      if (pos == std::string::npos) continue;
      name.replace(pos + 14, from.size(), to);
      if (t.dim() == 2) value = t.view({t.size(0), t.size(1), 1, 1});  // LDM stored 1x1 convs
    }
    legacy.emplace(name, value);
  }
  ASSERT_TRUE(legacy.contains("encoder.mid_block.attentions.0.proj_attn.weight"));
  const auto path = temp_file("legacy.safetensors");
  io::save_safetensors(path, legacy);
  AutoencoderKL vae(AutoencoderKLConfig::from_json_file(dir / "config.json"));
  encoders::load_autoencoder_weights(vae, path);
  for (const auto& [name, t] : io::state_dict(*vae)) {
    EXPECT_TRUE(at::equal(t, weights.at(name))) << name;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace microdit
