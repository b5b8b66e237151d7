// Tests for the CLIP image tower and the text projection: configs of released models, parameter
// names equal to the files' keys, strict loading with named errors, and the non-causal layers.
// Outputs are compared with transformers and open_clip in test_clip_score.cpp.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <utility>
#include <vector>

#include "microdit/encoders/clip_vision.h"
#include "microdit/image/clip_preprocess.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "test_support.h"

namespace microdit::encoders {
namespace {

namespace fs = std::filesystem;

const fs::path kData = test::source_dir() / "tests" / "data" / "clip_score";

io::Json hf_config() { return io::read_json_file(kData / "hf" / "config.json"); }
io::Json open_clip_config() {
  return io::read_json_file(kData / "open_clip" / "open_clip_config.json");
}
io::TensorMap hf_tensors() { return io::load_safetensors(kData / "hf" / "model.safetensors"); }
io::TensorMap open_clip_tensors() {
  return io::load_safetensors(kData / "open_clip" / "open_clip_model.safetensors");
}

std::vector<std::string> keys_with_prefix(const io::TensorMap& tensors,
                                          std::initializer_list<std::string_view> prefixes) {
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : tensors) {
    for (std::string_view prefix : prefixes) {
      if (key.starts_with(prefix) && !key.ends_with(".position_ids")) keys.push_back(key);
    }
  }
  return keys;
}

std::vector<std::string> keys(const torch::nn::Module& module) {
  std::vector<std::string> out;
  for (const auto& [key, tensor] : io::state_dict(module)) out.push_back(key);
  return out;
}

TEST(CLIPVision, ConfigOfOpenAIVitLargePatch14) {
  // The vision_config and projection_dim of openai/clip-vit-large-patch14's config.json.
  const io::Json json = io::parse_json(R"({"projection_dim": 768, "vision_config": {
      "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
      "num_hidden_layers": 24, "patch_size": 14, "image_size": 224, "hidden_act": "quick_gelu",
      "layer_norm_eps": 1e-05}})", "test");
  const CLIPVisionConfig config = CLIPVisionConfig::from_hf_json(json);
  EXPECT_EQ(config.width, 1024);
  EXPECT_EQ(config.heads, 16);
  EXPECT_EQ(config.layers, 24);
  EXPECT_EQ(config.grid(), 16);
  EXPECT_EQ(config.layer_config().mlp_width(), 4096);
  EXPECT_EQ(config.projection_dim, 768);
  EXPECT_EQ(config.activation, CLIPTextActivation::quick_gelu);
  EXPECT_FALSE(config.layer_config().causal);
}

TEST(CLIPVision, OpenClipConfigDerivesHeadsFromHeadWidth) {
  const CLIPVisionConfig config = CLIPVisionConfig::from_open_clip_json(open_clip_config());
  EXPECT_EQ(config.layout, CLIPTextLayout::open_clip);
  EXPECT_EQ(config.width, 16);
  EXPECT_EQ(config.heads, 2);  // width 16 / head_width 8
  EXPECT_EQ(config.projection_dim, 8);
  EXPECT_EQ(config.activation, CLIPTextActivation::quick_gelu);
}

TEST(CLIPVision, UnsupportedOpenClipOptionsAreNamed) {
  for (const char* option : {R"("attentional_pool": true)", R"("pool_type": "avg")",
                             R"("ls_init_value": 0.1)", R"("layers": [3, 4, 6, 3])",
                             R"("timm_model_name": "vit_base")", R"("no_ln_pre": true)"}) {
    const io::Json json =
        io::parse_json(std::string(R"({"embed_dim": 8, "vision_cfg": {"width": 16, )") + option +
                       R"(}, "text_cfg": {}})", "test");
    const std::string key = io::parse_json(std::string("{") + option + "}", "test").begin().key();
    EXPECT_TRUE(test::throws_with<std::invalid_argument>(
        [&] { CLIPVisionConfig::from_open_clip_json(json); }, "open_clip vision_cfg: " + key,
        {"not supported"}))
        << option;
  }
}

TEST(CLIPVision, ParameterNamesAreTheOriginalKeys) {
  CLIPVisionEncoder hf(CLIPVisionConfig::from_hf_json(hf_config()));
  EXPECT_EQ(keys(*hf), keys_with_prefix(hf_tensors(), {"vision_model.", "visual_projection."}));
  CLIPVisionEncoder oc(CLIPVisionConfig::from_open_clip_json(open_clip_config()));
  EXPECT_EQ(keys(*oc), keys_with_prefix(open_clip_tensors(), {"visual."}));
}

TEST(CLIPVision, TextProjectionIsLoadedOnlyWhenAsked) {
  // projection_dim 0 (the caption encoder) skips text_projection; > 0 loads it under its key.
  for (const bool hf : {true, false}) {
    SCOPED_TRACE(hf ? "hf" : "open_clip");
    const io::TensorMap file = hf ? hf_tensors() : open_clip_tensors();
    CLIPTextConfig config = hf ? CLIPTextConfig::from_hf_json(hf_config())
                               : CLIPTextConfig::from_open_clip_json(open_clip_config());
    CLIPTextEncoder plain(config);
    EXPECT_NO_THROW(load_clip_text_state_dict(plain, file));
    EXPECT_THROW(plain->projected(at::zeros({1, 3}, at::kLong)), std::logic_error);
    config.projection_dim = hf ? 16 : 8;
    CLIPTextEncoder projected(config);
    load_clip_text_state_dict(projected, file);
    const at::Tensor weight = hf ? projected->text_projection_linear->weight
                                 : projected->text_projection;
    EXPECT_TRUE(at::equal(weight, file.at(hf ? "text_projection.weight" : "text_projection")
                                      .to(at::kFloat)));
    at::NoGradGuard no_grad;
    const at::Tensor ids = at::tensor({49406, 320, 49407}, at::kLong).view({1, 3});
    EXPECT_EQ(projected->projected(ids).sizes(), (std::vector<int64_t>{1, config.projection_dim}));
  }
}

TEST(CLIPVision, MissingAndUnexpectedKeysAreNamed) {
  io::TensorMap file = hf_tensors();
  file.erase("vision_model.encoder.layers.1.mlp.fc2.bias");
  file["vision_model.extra.weight"] = at::zeros({2});
  CLIPVisionEncoder encoder(CLIPVisionConfig::from_hf_json(hf_config()));
  EXPECT_TRUE(test::throws_with([&] { load_clip_vision_state_dict(encoder, file); },
                                "load_state_dict: 2 problems",
                                {"missing key vision_model.encoder.layers.1.mlp.fc2.bias",
                                 "unexpected key vision_model.extra.weight"}));
  CLIPVisionEncoder oc(CLIPVisionConfig::from_open_clip_json(open_clip_config()));
  EXPECT_TRUE(test::throws_with([&] { load_clip_vision_state_dict(oc, hf_tensors()); },
                                "no image-tower tensors in the open_clip layout", {"visual.*"}));
}

TEST(CLIPVision, EveryPatchSeesEveryOtherPatch) {
  // Non-causal: changing the last patch changes the class token's output. (Under the text
  // tower's causal mask the class token, first in the sequence, would not see it.)
  CLIPVisionEncoder encoder(CLIPVisionConfig::from_hf_json(hf_config()));
  load_clip_vision_state_dict(encoder, hf_tensors());
  encoder->eval();
  at::NoGradGuard no_grad;
  at::Tensor pixels = at::randn({1, 3, 224, 224}, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor before = encoder(pixels);
  pixels.slice(2, 192, 224).slice(3, 192, 224).add_(1.0);
  EXPECT_GT((encoder(pixels) - before).abs().max().item<double>(), 1e-4);
  EXPECT_THROW(encoder(at::zeros({1, 3, 32, 32})), std::invalid_argument);
}

TEST(CLIPVision, PreprocessorConfigForms) {
  // The openai files' integer size/crop_size and the dict forms of newer saves read the same.
  const auto old_form = image::CLIPImagePreprocess::from_hf_json(
      io::read_json_file(kData / "hf" / "preprocessor_config.json"));
  const auto new_form = image::CLIPImagePreprocess::from_hf_json(io::parse_json(
      R"({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224},
          "resample": 3, "image_mean": [0.48145466, 0.4578275, 0.40821073],
          "image_std": [0.26862954, 0.26130258, 0.27577711]})", "test"));
  EXPECT_EQ(old_form.resize_to, 224);
  EXPECT_EQ(new_form.resize_to, 224);
  EXPECT_EQ(old_form.crop_size, new_form.crop_size);
  EXPECT_EQ(old_form.mean, new_form.mean);
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { image::CLIPImagePreprocess::from_hf_json({{"resample", 2}}); },
      "CLIPImageProcessor: resample = 2", {"bicubic"}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] {
        image::CLIPImagePreprocess::from_hf_json(
            io::parse_json(R"({"size": {"height": 224, "width": 300}})", "test"));
      },
      "CLIPImageProcessor: size", {"shortest_edge"}));
}

// Values whose derived sizes would overflow, or would ask for images of gigabytes, are refused
// by the readers (the fuzz harness encoder_configs holds them to it under UBSan).
TEST(CLIPVision, ConfigReadersBoundWhatTheyDerive) {
  auto parse = [](const char* text) { return io::parse_json(text, "test"); };
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { CLIPTextConfig::from_open_clip_json(parse(R"({"text_cfg": {"mlp_ratio": 1e300}})")); },
      "CLIP text config: mlp_ratio = ", {"below 2^62"}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] {
        CLIPTextConfig::from_hf_json(parse(R"({"intermediate_size": 9223372036854775807})"));
      },
      "CLIP text config: intermediate_size = 9223372036854775807", {"below 2^53"}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] {
        CLIPVisionConfig::from_hf_json(
            parse(R"({"vision_config": {"image_size": 4294967296, "patch_size": 1}})"));
      },
      "CLIP vision config: image_size = 4294967296", {"at most 4096 patches of 1 per side"}));
  for (const auto& [json, message] : std::vector<std::pair<const char*, const char*>>{
           {R"({"size": 0})", "CLIPImageProcessor: size = 0, expected 1 to 4096"},
           {R"({"crop_size": {"height": 5000, "width": 5000}})",
            "CLIPImageProcessor: crop_size = 5000, expected 1 to 4096"},
           {R"({"rescale_factor": -1})",
            "CLIPImageProcessor: rescale_factor = -1, expected a positive finite number"}}) {
    EXPECT_TRUE(test::throws_with<std::invalid_argument>(
        [&] { image::CLIPImagePreprocess::from_hf_json(parse(json)); }, message, {}))
        << json;
  }
}

}  // namespace
}  // namespace microdit::encoders
