// Tests for the CLIP text encoder: outputs against open_clip and HF transformers on small
// random-weight models (tests/data/clip_text, written by
// scripts/reference/make_clip_text_reference.py), strict loading with named errors, configs.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "microdit/encoders/clip_text.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "test_support.h"

namespace microdit::encoders {
namespace {

namespace fs = std::filesystem;

const fs::path kData = test::source_dir() / "tests" / "data" / "clip_text";
constexpr double kTolerance = 1e-4;

io::Json read_json(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return io::parse_json(text.str(), "test");
}

const io::TensorMap& expected() {
  static const io::TensorMap tensors = io::load_safetensors(kData / "expected.safetensors");
  return tensors;
}

double relative_error(const at::Tensor& ours, const at::Tensor& ref) {
  return (ours.to(at::kDouble) - ref.to(at::kDouble)).norm().item<double>() /
         ref.to(at::kDouble).norm().item<double>();
}

// The tiny open_clip tower of the fixtures: width 32, 4 heads, 2 layers, 256 ids, QuickGELU.
CLIPTextConfig open_clip_config() {
  return CLIPTextConfig::from_open_clip_json(read_json(kData / "open_clip_config.json"));
}

struct Case {
  std::string name;     // prefix of the expected tensors
  std::string weights;  // file under kData
  std::string config;   // HF config.json under kData; empty: the open_clip config
  std::string pooled;   // expected pooled output
  std::string states;   // expected token states
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"open_clip (.pt checkpoint)", "open_clip.pt", "", "open_clip.pooled", "open_clip.tokens"},
      {"open_clip (.safetensors)", "open_clip.safetensors", "", "open_clip.pooled",
       "open_clip.tokens"},
      {"hf quick_gelu (.safetensors)", "hf_quick_gelu.safetensors", "hf_quick_gelu_config.json",
       "hf_quick_gelu.pooler_output", "hf_quick_gelu.last_hidden_state"},
      {"hf gelu (CLIPModel .bin)", "hf_gelu_clip.bin", "hf_gelu_clip_config.json",
       "hf_gelu.pooler_output", "hf_gelu.last_hidden_state"},
  };
  return all;
}

CLIPTextEncoder load_case(const Case& c) {
  const CLIPTextConfig config = c.config.empty()
                                    ? open_clip_config()
                                    : CLIPTextConfig::from_hf_json(read_json(kData / c.config));
  CLIPTextEncoder encoder(config);
  load_clip_text_weights(encoder, kData / c.weights);
  encoder->eval();
  return encoder;
}

template <class F>
testing::AssertionResult throws_with(F&& f, std::initializer_list<std::string_view> pieces) {
  return test::throws_with<std::exception>(f, "", pieces);
}

io::TensorMap open_clip_tensors() { return io::load_safetensors(kData / "open_clip.safetensors"); }

std::vector<std::string> sorted_keys(const io::TensorMap& tensors) {
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : tensors) keys.push_back(key);
  return keys;  // std::map: already sorted
}

// --- outputs ---------------------------------------------------------------------------------

TEST(CLIPText, MatchesReferenceForEveryLayoutAndFileType) {
  const at::Tensor ids = expected().at("ids");
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    CLIPTextEncoder encoder = load_case(c);
    at::NoGradGuard no_grad;
    const double states_error = relative_error(encoder->forward(ids), expected().at(c.states));
    const double pooled_error = relative_error(encoder->pooled(ids), expected().at(c.pooled));
    std::cout << "[clip_text] " << c.name << ": token states rel. error " << states_error
              << ", pooled rel. error " << pooled_error << "\n";
    EXPECT_LE(states_error, kTolerance);
    EXPECT_LE(pooled_error, kTolerance);
  }
}

TEST(CLIPText, ReferenceTellsTheActivationsApart) {
  // The fixtures are sensitive enough: the open_clip weights run with exact GELU instead of
  // QuickGELU miss by 6.5e-3, 65 times the tolerance.
  CLIPTextConfig config = open_clip_config();
  config.activation = CLIPTextActivation::gelu;
  CLIPTextEncoder encoder(config);
  load_clip_text_weights(encoder, kData / "open_clip.safetensors");
  at::NoGradGuard no_grad;
  EXPECT_GT(
      relative_error(encoder->forward(expected().at("ids")), expected().at("open_clip.tokens")),
      10 * kTolerance);
}

TEST(CLIPText, ShorterSequencesAreAPrefixOfTheFullOutput) {
  // Causal attention: the first T states depend only on the first T ids.
  CLIPTextEncoder encoder = load_case(cases()[0]);
  at::NoGradGuard no_grad;
  const at::Tensor ids = expected().at("ids");
  const at::Tensor full = encoder->forward(ids);
  const at::Tensor prefix = encoder->forward(ids.slice(1, 0, 16));
  ASSERT_EQ(prefix.sizes(), (std::vector<int64_t>{4, 16, 32}));
  EXPECT_LE(relative_error(prefix, full.slice(1, 0, 16)), 1e-6);
}

TEST(CLIPText, AcceptsInt32IdsAndHalfWeights) {
  CLIPTextEncoder encoder = load_case(cases()[0]);
  at::NoGradGuard no_grad;
  const at::Tensor ids = expected().at("ids");
  const at::Tensor reference = expected().at("open_clip.tokens");
  EXPECT_LE(relative_error(encoder->forward(ids.to(at::kInt)), reference), kTolerance);
  // Weights stored in fp16 are converted to the module's dtype on load.
  io::TensorMap half = open_clip_tensors();
  for (auto& [key, tensor] : half) tensor = tensor.to(at::kHalf);
  load_clip_text_state_dict(encoder, half);
  EXPECT_LE(relative_error(encoder->forward(ids), reference), 1e-2);
}

TEST(CLIPText, ParityOnDevice_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor ids = expected().at("ids");
  for (const Case& c : {cases()[0], cases()[3]}) {
    SCOPED_TRACE(c.name);
    CLIPTextEncoder encoder = load_case(c);
    encoder->to(at::kCUDA);
    at::NoGradGuard no_grad;
    const at::Tensor states = encoder->forward(ids.to(at::kCUDA));
    EXPECT_TRUE(states.is_cuda());
    const double error = relative_error(states.cpu(), expected().at(c.states));
    std::cout << "[clip_text] CUDA " << c.name << ": token states rel. error " << error << "\n";
    EXPECT_LE(error, kTolerance);
    EXPECT_LE(relative_error(encoder->pooled(ids.to(at::kCUDA)).cpu(), expected().at(c.pooled)),
              kTolerance);
  }
}

// --- parameter names and loading --------------------------------------------------------------

TEST(CLIPText, ParameterNamesAreTheOriginalKeys) {
  // Our state dict is the file's, less the keys outside the text tower.
  auto text_keys = [](const io::TensorMap& file) {
    io::TensorMap kept;
    for (const auto& [key, tensor] : file) {
      if (!is_ignored_clip_key(key)) kept.emplace(key, tensor);
    }
    return sorted_keys(kept);
  };
  EXPECT_EQ(sorted_keys(io::state_dict(*CLIPTextEncoder(open_clip_config()))),
            text_keys(open_clip_tensors()));
  const CLIPTextConfig hf =
      CLIPTextConfig::from_hf_json(read_json(kData / "hf_quick_gelu_config.json"));
  EXPECT_EQ(sorted_keys(io::state_dict(*CLIPTextEncoder(hf))),
            text_keys(io::load_safetensors(kData / "hf_quick_gelu.safetensors")));
}

TEST(CLIPText, FullClipCheckpointLoadsWithImageTowerSkipped) {
  const io::TensorMap file = open_clip_tensors();
  ASSERT_TRUE(file.contains("visual.conv1.weight"));
  ASSERT_TRUE(file.contains("text_projection"));
  ASSERT_TRUE(file.contains("logit_scale"));
  CLIPTextEncoder encoder(open_clip_config());
  EXPECT_NO_THROW(load_clip_text_weights(encoder, kData / "open_clip.pt"));
  EXPECT_TRUE(at::equal(encoder->token_embedding->weight, file.at("token_embedding.weight")));
  EXPECT_TRUE(at::equal(encoder->layers[1]->attn->in_proj_weight,
                        file.at("transformer.resblocks.1.attn.in_proj_weight")));
}

TEST(CLIPText, MissingKeyIsNamedAndLeavesTheModuleUntouched) {
  io::TensorMap file = open_clip_tensors();
  file.erase("transformer.resblocks.1.mlp.c_proj.bias");
  CLIPTextEncoder encoder(open_clip_config());
  const at::Tensor before = encoder->token_embedding->weight.clone();
  EXPECT_TRUE(throws_with([&] { load_clip_text_state_dict(encoder, file); },
                          {"missing key transformer.resblocks.1.mlp.c_proj.bias", "[32]"}));
  EXPECT_TRUE(at::equal(encoder->token_embedding->weight, before));

  // Through a file, the message starts with its path.
  const fs::path path = fs::temp_directory_path() /
                        ("clip_text_missing_" + std::to_string(getpid()) + ".safetensors");
  io::TensorMap hf = io::load_safetensors(kData / "hf_quick_gelu.safetensors");
  hf.erase("text_model.encoder.layers.0.self_attn.k_proj.weight");
  io::save_safetensors(path, hf);
  CLIPTextEncoder hf_encoder(
      CLIPTextConfig::from_hf_json(read_json(kData / "hf_quick_gelu_config.json")));
  EXPECT_TRUE(throws_with(
      [&] { load_clip_text_weights(hf_encoder, path); },
      {path.string() + ": ", "missing key text_model.encoder.layers.0.self_attn.k_proj.weight"}));
  fs::remove(path);
}

TEST(CLIPText, UnexpectedAndMisshapenTensorsAreNamed) {
  io::TensorMap file = open_clip_tensors();
  file["transformer.resblocks.2.ln_1.weight"] = at::ones({32});
  file["positional_embedding"] = at::zeros({76, 32});
  CLIPTextEncoder encoder(open_clip_config());
  EXPECT_TRUE(throws_with([&] { load_clip_text_state_dict(encoder, file); },
                          {"unexpected key transformer.resblocks.2.ln_1.weight",
                           "positional_embedding has shape [76,32], model expects [77,32]"}));
}

TEST(CLIPText, WrongLayoutIsReportedAsSuch) {
  CLIPTextEncoder encoder(open_clip_config());
  EXPECT_TRUE(
      throws_with([&] { load_clip_text_weights(encoder, kData / "hf_quick_gelu.safetensors"); },
                  {"hf_quick_gelu.safetensors: ", "hf layout", "open_clip layout"}));
}

TEST(CLIPText, BareTransformers5KeysLoad) {
  // transformers 5 holds a CLIPTextModel's modules without the text_model. prefix.
  io::TensorMap bare;
  for (const auto& [key, tensor] : io::load_safetensors(kData / "hf_quick_gelu.safetensors")) {
    bare.emplace(key.substr(std::string("text_model.").size()), tensor);
  }
  CLIPTextEncoder encoder(
      CLIPTextConfig::from_hf_json(read_json(kData / "hf_quick_gelu_config.json")));
  load_clip_text_state_dict(encoder, bare);
  at::NoGradGuard no_grad;
  EXPECT_LE(relative_error(encoder->forward(expected().at("ids")),
                           expected().at("hf_quick_gelu.last_hidden_state")),
            kTolerance);
}

TEST(CLIPText, IgnoredKeys) {
  for (const char* key : {"visual.conv1.weight", "visual.transformer.resblocks.0.ln_1.weight",
                          "text_projection", "text_projection.weight", "logit_scale",
                          "visual_projection.weight", "vision_model.embeddings.class_embedding",
                          "text_model.embeddings.position_ids", "position_ids"}) {
    EXPECT_TRUE(is_ignored_clip_key(key)) << key;
  }
  for (const char* key : {"token_embedding.weight", "visualize.weight", "ln_final.weight",
                          "text_model.embeddings.position_embedding.weight"}) {
    EXPECT_FALSE(is_ignored_clip_key(key)) << key;
  }
}

// --- inputs and configs ----------------------------------------------------------------------

TEST(CLIPText, RejectsBadIds) {
  CLIPTextEncoder encoder(open_clip_config());
  EXPECT_TRUE(throws_with([&] { encoder->forward(at::zeros({2, 77})); }, {"integer token ids"}));
  EXPECT_TRUE(throws_with([&] { encoder->forward(at::zeros({77}, at::kLong)); }, {"(B,T)"}));
  EXPECT_TRUE(throws_with(
      [&] {
        encoder->forward(at::zeros({2, 78}, at::kLong));
      },
      {"78 tokens", "context_length"}));
  EXPECT_TRUE(throws_with(
      [&] {
        encoder->forward(at::full({1, 77}, 256, at::kLong));
      },
      {"token id 256", "vocab_size"}));
  EXPECT_TRUE(throws_with(
      [&] {
        encoder->forward(at::full({1, 77}, -1, at::kLong));
      },
      {"token id -1"}));
}

TEST(CLIPText, Dfn5bConfigMatchesOpenClip) {
  const io::Json cfg = read_json(kData / "dfn5b_vit_h_14_378_config.json");
  const io::Json& text = cfg.at("text_cfg");
  const CLIPTextConfig config = CLIPTextConfig::dfn5b_vit_h_14_378();
  EXPECT_EQ(config.vocab_size, text.at("vocab_size").get<int64_t>());
  EXPECT_EQ(config.context_length, text.at("context_length").get<int64_t>());
  EXPECT_EQ(config.width, text.at("width").get<int64_t>());
  EXPECT_EQ(config.heads, text.at("heads").get<int64_t>());
  EXPECT_EQ(config.layers, text.at("layers").get<int64_t>());
  EXPECT_TRUE(cfg.at("quick_gelu").get<bool>());
  EXPECT_EQ(config.activation, CLIPTextActivation::quick_gelu);
  EXPECT_EQ(config.mlp_width(), 4096);  // open_clip's default mlp_ratio 4
  EXPECT_EQ(config.layer_norm_eps, 1e-5);
  EXPECT_EQ(config.layout, CLIPTextLayout::open_clip);
  // The same tower read from the open_clip model config.
  const CLIPTextConfig parsed = CLIPTextConfig::from_open_clip_json(cfg);
  EXPECT_EQ(parsed.vocab_size, config.vocab_size);
  EXPECT_EQ(parsed.context_length, config.context_length);
  EXPECT_EQ(parsed.width, config.width);
  EXPECT_EQ(parsed.heads, config.heads);
  EXPECT_EQ(parsed.layers, config.layers);
  EXPECT_EQ(parsed.mlp_width(), config.mlp_width());
  EXPECT_EQ(parsed.activation, config.activation);
  EXPECT_EQ(parsed.layout, CLIPTextLayout::open_clip);
  EXPECT_THROW(CLIPTextConfig::from_open_clip_json(io::Json::object()), std::invalid_argument);
}

TEST(CLIPText, ConfigFromHfJson) {
  const CLIPTextConfig flat =
      CLIPTextConfig::from_hf_json(read_json(kData / "hf_quick_gelu_config.json"));
  EXPECT_EQ(flat.layout, CLIPTextLayout::hf);
  EXPECT_EQ(flat.activation, CLIPTextActivation::quick_gelu);
  EXPECT_EQ(flat.vocab_size, 256);
  EXPECT_EQ(flat.width, 32);
  EXPECT_EQ(flat.heads, 4);
  EXPECT_EQ(flat.layers, 2);
  EXPECT_EQ(flat.mlp_width(), 128);
  EXPECT_EQ(flat.context_length, 77);

  // A CLIPConfig: the text_config entry is used.
  const CLIPTextConfig nested =
      CLIPTextConfig::from_hf_json(read_json(kData / "hf_gelu_clip_config.json"));
  EXPECT_EQ(nested.activation, CLIPTextActivation::gelu);
  EXPECT_EQ(nested.width, 32);

  // Keys left out take HF's defaults (openai/clip-vit-base-patch32's text tower).
  const CLIPTextConfig defaults = CLIPTextConfig::from_hf_json(io::parse_json("{}", "test"));
  EXPECT_EQ(defaults.width, 512);
  EXPECT_EQ(defaults.heads, 8);
  EXPECT_EQ(defaults.layers, 12);
  EXPECT_EQ(defaults.mlp_width(), 2048);
  EXPECT_EQ(defaults.vocab_size, 49408);
  EXPECT_EQ(defaults.activation, CLIPTextActivation::quick_gelu);

  EXPECT_TRUE(throws_with(
      [] { CLIPTextConfig::from_hf_json(io::parse_json(R"({"hidden_act":"gelu_new"})", "test")); },
      {"hidden_act", "gelu_new"}));
  EXPECT_TRUE(throws_with(
      [] {
        CLIPTextConfig::from_hf_json(
            io::parse_json(R"({"hidden_size":30,"num_attention_heads":4})", "test"));
      },
      {"heads = 4", "divisor of width 30"}));
  EXPECT_TRUE(
      throws_with([] { CLIPTextConfig::from_hf_json({{"hidden_size", "wide"}}); },
                  {"hidden_size must be an integer"}));
}

}  // namespace
}  // namespace microdit::encoders
