// Tests for CLIPScore against torchmetrics' CLIPScore (HF layout) and open_clip itself
// (open_clip layout), on tiny random CLIP models with the real tokenizer (tests/data/clip_score,
// written by scripts/reference/make_clip_score_reference.py): pixels, token ids, embeddings,
// per-pair scores, the floored mean, and the errors a user meets.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/eval/clip_score.h"
#include "microdit/io/safetensors.h"
#include "test_support.h"

namespace microdit::eval {
namespace {

namespace fs = std::filesystem;

const fs::path kData = test::source_dir() / "tests" / "data" / "clip_score";
const fs::path kVocab =
    test::source_dir() / "tests" / "data" / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz";
constexpr int64_t kStride = 5;  // the reference keeps every 5th pixel row and column

const io::TensorMap& expected() {
  static const io::TensorMap tensors = io::load_safetensors(kData / "expected.safetensors");
  return tensors;
}

std::vector<at::Tensor> images() {
  std::vector<at::Tensor> out;
  for (int i = 0; expected().contains("images." + std::to_string(i)); ++i) {
    out.push_back(expected().at("images." + std::to_string(i)));
  }
  return out;
}

const std::vector<std::string>& captions() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> out;
    const io::Json json = io::read_json_file(kData / "captions.json");
    for (const io::Json& c : json) {
      out.push_back(c.get<std::string>());
    }
    return out;
  }();
  return all;
}

// The HF folder as a user has it: the committed model files plus vocab.json and merges.txt,
// derived from the committed open_clip vocabulary (as openai/clip-vit-* ship them).
void make_hf_folder(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(kData / "hf")) {
    fs::copy_file(entry.path(), dir / entry.path().filename());
  }
  encoders::write_hf_vocabulary(encoders::read_open_clip_vocabulary(kVocab), dir / "vocab.json",
                                dir / "merges.txt");
}

const fs::path& hf_folder() {
  static const test::TempDir dir("clip_score_hf");
  static const bool made = (make_hf_folder(dir.path), true);
  (void)made;
  return dir.path;
}

CLIPScore& hf_model() {
  static CLIPScore model(CLIPScoreFiles::hf_folder(hf_folder()));
  return model;
}

CLIPScoreFiles open_clip_files() {
  return CLIPScoreFiles::open_clip(kData / "open_clip" / "open_clip_config.json",
                                   kData / "open_clip" / "open_clip_model.safetensors", kVocab);
}

CLIPScore& open_clip_model() {
  static CLIPScore model(open_clip_files());
  return model;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// Sampled pixels and full per-channel sums against the reference's.
void expect_pixels(CLIPScore& model, const std::string& prefix) {
  const at::Tensor pixels = model.preprocess(images());  // (B,3,224,224)
  ASSERT_EQ(pixels.sizes(), (std::vector<int64_t>{5, 3, 224, 224}));
  const at::Tensor strided = pixels.slice(2, 0, 224, kStride).slice(3, 0, 224, kStride);
  const double sampled = max_abs_diff(strided, expected().at(prefix + ".pixel_values_strided"));
  const double sums = max_abs_diff(pixels.to(at::kDouble).sum({2, 3}),
                                   expected().at(prefix + ".pixel_sums"));
  std::cout << "[clip_score] " << prefix << " pixels: sampled max abs diff " << sampled
            << ", per-channel sum max abs diff " << sums << "\n";
  EXPECT_LE(sampled, 1e-6);
  EXPECT_LE(sums, 1e-3);
}

void expect_embeds(CLIPScore& model, const std::string& prefix) {
  const double image = max_abs_diff(model.image_embeds(images()), expected().at(prefix + ".image_embeds"));
  const double text = max_abs_diff(model.text_embeds(captions()), expected().at(prefix + ".text_embeds"));
  std::cout << "[clip_score] " << prefix << " embeds: image max abs diff " << image
            << ", text max abs diff " << text << "\n";
  EXPECT_LE(image, 1e-5);
  EXPECT_LE(text, 1e-5);
}

// --- HF layout against torchmetrics ----------------------------------------------------------

TEST(CLIPScoreHF, PixelsMatchCLIPImageProcessor) { expect_pixels(hf_model(), "hf"); }

TEST(CLIPScoreHF, TokenIdsMatchCLIPProcessorCutByTorchmetrics) {
  const at::Tensor ids = hf_model().token_ids(captions());
  const at::Tensor reference = expected().at("hf.input_ids");
  ASSERT_EQ(ids.sizes(), reference.sizes());
  EXPECT_TRUE(at::equal(ids, reference));
  // The long caption was cut at 77 tokens and lost its end token, as torchmetrics cuts it.
  EXPECT_NE(ids[3][76].item<int64_t>(), 49407);
}

TEST(CLIPScoreHF, EmbedsMatchGetFeatures) { expect_embeds(hf_model(), "hf"); }

TEST(CLIPScoreHF, ScoresMatchTorchmetrics) {
  const CLIPScoreResult result = hf_model().score(images(), captions());
  const double per_pair = max_abs_diff(result.scores, expected().at("hf.scores"));
  const double reference = expected().at("hf.clip_score").item<double>();
  std::cout << "[clip_score] hf: per-pair max abs diff " << per_pair << ", clip_score "
            << result.clip_score << " vs torchmetrics " << reference << "\n";
  EXPECT_LE(per_pair, 1e-4);
  EXPECT_NEAR(result.clip_score, reference, 1e-4);
  // The fixture has negative pairs and a positive mean: the floor applies to the mean only.
  EXPECT_LT(expected().at("hf.scores").min().item<double>(), 0.0);
  EXPECT_GT(reference, 0.0);
}

TEST(CLIPScoreHF, NegativeMeanFloorsToZero) {
  std::vector<at::Tensor> some_images;
  std::vector<std::string> some_captions;
  const at::Tensor index = expected().at("negative.index");
  for (int64_t i = 0; i < index.numel(); ++i) {
    some_images.push_back(images()[index[i].item<int64_t>()]);
    some_captions.push_back(captions()[index[i].item<int64_t>()]);
  }
  const CLIPScoreResult result = hf_model().score(some_images, some_captions);
  EXPECT_LE(max_abs_diff(result.scores, expected().at("negative.scores")), 1e-4);
  EXPECT_LT(result.scores.mean().item<double>(), 0.0);
  EXPECT_GT(result.scores.max().item<double>(), 0.0);  // one pair above zero, not clamped alone
  EXPECT_EQ(result.clip_score, 0.0);
  EXPECT_EQ(expected().at("negative.clip_score").item<double>(), 0.0);
}

TEST(CLIPScoreHF, PaddingDoesNotChangeTextEmbeds) {
  // Each caption alone (no padding, and no cut for the short ones) gives its batched embedding.
  const at::Tensor batched = hf_model().text_embeds(captions());
  for (size_t i = 0; i < captions().size(); ++i) {
    const at::Tensor alone = hf_model().text_embeds({captions()[i]});
    EXPECT_LE(max_abs_diff(alone[0], batched[static_cast<int64_t>(i)]), 1e-6) << captions()[i];
  }
}

TEST(CLIPScoreHF, AccumulatorFloorsTheMeanOverBatches) {
  CLIPScoreAccumulator total;
  EXPECT_TRUE(std::isnan(total.compute()));
  total.add(at::tensor({-30.0f, 10.0f}));
  EXPECT_EQ(total.compute(), 0.0);
  total.add(at::tensor({50.0f}));
  EXPECT_DOUBLE_EQ(total.compute(), 10.0);
}

TEST(CLIPScoreHF, ScoresOnDevice_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#ifndef MICRODIT_HAVE_PCRE2
  GTEST_SKIP()
      << "a build without PCRE2 has no CLIP tokenizer (the GPU machine has no libpcre2-dev)";
#endif
  CLIPScore model(CLIPScoreFiles::hf_folder(hf_folder()), at::kCUDA);
  const CLIPScoreResult result = model.score(images(), captions());
  const double per_pair = max_abs_diff(result.scores, expected().at("hf.scores"));
  std::cout << "[clip_score] hf CUDA: per-pair max abs diff " << per_pair << "\n";
  // cuDNN may run the patch convolution in TF32.
  EXPECT_LE(per_pair, 1e-2);
  EXPECT_NEAR(result.clip_score, expected().at("hf.clip_score").item<double>(), 1e-2);
}

// --- open_clip layout against open_clip -------------------------------------------------------

TEST(CLIPScoreOpenClip, PixelsMatchOpenClipTransform) { expect_pixels(open_clip_model(), "open_clip"); }

TEST(CLIPScoreOpenClip, TokenIdsMatchOpenClipTokenizer) {
  EXPECT_TRUE(at::equal(open_clip_model().token_ids(captions()), expected().at("open_clip.input_ids")));
}

TEST(CLIPScoreOpenClip, EmbedsMatchEncodeImageAndEncodeText) {
  expect_embeds(open_clip_model(), "open_clip");
}

TEST(CLIPScoreOpenClip, ScoresMatchCosineOfOpenClipEmbeds) {
  const CLIPScoreResult result = open_clip_model().score(images(), captions());
  const at::Tensor reference = expected().at("open_clip.scores");
  const double per_pair = max_abs_diff(result.scores, reference);
  std::cout << "[clip_score] open_clip: per-pair max abs diff " << per_pair << "\n";
  EXPECT_LE(per_pair, 1e-4);
  EXPECT_NEAR(result.clip_score, std::max(reference.mean().item<double>(), 0.0), 1e-4);
}

// --- errors -----------------------------------------------------------------------------------

TEST(CLIPScoreErrors, MismatchedCountsAreRejected) {
  std::vector<at::Tensor> two = {images()[0], images()[1]};
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { hf_model().score(two, {"one caption"}); }, "CLIPScore: 2 images and 1 captions", {}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>([&] { hf_model().score({}, {}); },
                                                       "CLIPScore: 0 images", {}));
}

TEST(CLIPScoreErrors, MissingFilesAreNamed) {
  for (const char* name : {"preprocessor_config.json", "vocab.json", "merges.txt", "config.json"}) {
    test::TempDir dir("clip_score_missing");
    make_hf_folder(dir.path);
    fs::remove(dir.path / name);
    EXPECT_TRUE(test::throws_with([&] { CLIPScore model(CLIPScoreFiles::hf_folder(dir.path)); },
                                  "CLIPScore: ", {(dir.path / name).string(), "missing"}))
        << name;
  }
  test::TempDir dir("clip_score_no_weights");
  make_hf_folder(dir.path);
  fs::remove(dir.path / "model.safetensors");
  EXPECT_TRUE(test::throws_with([&] { CLIPScoreFiles::hf_folder(dir.path); }, "CLIPScore: ",
                                {"no model.safetensors, model.safetensors.index.json or "
                                 "pytorch_model.bin"}));
}

TEST(CLIPScoreErrors, WrongTensorShapeNamesFileAndKey) {
  test::TempDir dir("clip_score_bad_shape");
  make_hf_folder(dir.path);
  io::TensorMap tensors = io::load_safetensors(dir.path / "model.safetensors");
  tensors["vision_model.post_layernorm.weight"] = at::zeros({16});
  io::save_safetensors(dir.path / "model.safetensors", tensors);
  EXPECT_TRUE(test::throws_with([&] { CLIPScore model(CLIPScoreFiles::hf_folder(dir.path)); },
                                (dir.path / "model.safetensors").string(),
                                {"vision_model.post_layernorm.weight", "[16]", "[32]"}));
}

// The HF folder with `from` replaced by `to` in its file `name`.
void edit_hf_file(const fs::path& dir, const std::string& name, const std::string& from,
                  const std::string& to) {
  test::write_bytes(dir / name, test::replace_once(test::read_bytes(dir / name), from, to));
}

// The towers' configs are compared with the weights before the towers are built: a config of
// another size is one line naming the config, not minutes spent building it.
TEST(CLIPScoreErrors, AConfigOfAnotherSizeIsRefusedBeforeBuilding) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"\"num_hidden_layers\": 2,\n    \"patch_size\"",
       "\"num_hidden_layers\": 4096,\n    \"patch_size\"",
       "the image tower's layer count is 4096 but the weights have 2 "
       "(vision_model.encoder.layers.*)"},
      {"\"patch_size\": 32", "\"patch_size\": 16",
       "the image tower's patch_size is 16 but the weights have 32 "
       "(vision_model.embeddings.patch_embedding.weight)"},
      {"\"image_size\": 224", "\"image_size\": 448",
       "the image tower's token count (image_size / patch_size)^2 + 1 is 197 but the weights "
       "have 50 (vision_model.embeddings.position_embedding.weight)"},
      {"\"projection_dim\": 16", "\"projection_dim\": 24",
       "the image tower's projection_dim is 24 but the weights have 16 "
       "(visual_projection.weight)"},
      {"\"num_hidden_layers\": 2,\n    \"projection_dim\"",
       "\"num_hidden_layers\": 4096,\n    \"projection_dim\"",
       "the text tower's layer count is 4096 but the weights have 2 "
       "(text_model.encoder.layers.*)"}};
  for (const auto& [from, to, message] : cases) {
    test::TempDir dir("clip_score_config_size");
    make_hf_folder(dir.path);
    edit_hf_file(dir.path, "config.json", from, to);
    if (to.find("448") != std::string::npos) {  // the crop follows the tower's image size
      edit_hf_file(dir.path, "preprocessor_config.json", "\"crop_size\": 224", "\"crop_size\": 448");
    }
    try {
      CLIPScore model(CLIPScoreFiles::hf_folder(dir.path));
      ADD_FAILURE() << "loaded with " << to;
    } catch (const std::exception& e) {
      EXPECT_EQ(std::string(e.what()), (dir.path / "config.json").string() + ": " + message);
    }
  }
}

// A value the readers refuse is one line starting with the file that holds it.
TEST(CLIPScoreErrors, ConfigErrorsNameTheirFile) {
  const std::vector<std::tuple<std::string, std::string, std::string, std::string>> cases = {
      {"config.json", "\"hidden_act\": \"quick_gelu\",\n    \"hidden_size\": 32",
       "\"hidden_act\": \"relu\",\n    \"hidden_size\": 32", "hidden_act \"relu\""},
      {"config.json", "\"intermediate_size\": 32", "\"intermediate_size\": 9007199254740993",
       "intermediate_size = 9007199254740993, expected > 0 and below 2^53"},
      {"preprocessor_config.json", "\"size\": 224", "\"size\": 100000",
       "size = 100000, expected 1 to 4096"},
      {"preprocessor_config.json", "0.26862954", "0",
       "image_std = 0, expected a positive finite number"},
      {"preprocessor_config.json", "\"crop_size\": 224", "\"crop_size\": 200",
       "crop_size 200 (0: no crop), but the image tower of "}};
  for (const auto& [name, from, to, piece] : cases) {
    test::TempDir dir("clip_score_config_value");
    make_hf_folder(dir.path);
    edit_hf_file(dir.path, name, from, to);
    EXPECT_TRUE(test::throws_with([&] { CLIPScore model(CLIPScoreFiles::hf_folder(dir.path)); },
                                  (dir.path / name).string() + ": ", {piece}))
        << to;
  }
}

TEST(CLIPScoreErrors, AWeightIndexOfOtherTypesNamesTheIndex) {
  test::TempDir dir("clip_score_bad_index");
  make_hf_folder(dir.path);
  fs::remove(dir.path / "model.safetensors");
  const fs::path index = dir.path / "model.safetensors.index.json";
  test::write_bytes(index, R"({"weight_map": {"logit_scale": 5}})");
  EXPECT_TRUE(test::throws_with([&] { CLIPScoreFiles::hf_folder(dir.path); }, index.string() + ": ",
                                {"expected string, got integer"}));
}

TEST(CLIPScoreErrors, ShardedWeightsLoadThroughTheIndex) {
  test::TempDir dir("clip_score_sharded");
  make_hf_folder(dir.path);
  const io::TensorMap tensors = io::load_safetensors(dir.path / "model.safetensors");
  fs::remove(dir.path / "model.safetensors");
  io::TensorMap vision, rest;
  std::string map;
  for (const auto& [key, tensor] : tensors) {
    const bool is_vision = key.starts_with("vision_model.");
    (is_vision ? vision : rest).emplace(key, tensor);
    map += (map.empty() ? "\"" : ", \"") + key + "\": \"" +
           (is_vision ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") +
           "\"";
  }
  io::save_safetensors(dir.path / "model-00001-of-00002.safetensors", vision);
  io::save_safetensors(dir.path / "model-00002-of-00002.safetensors", rest);
  test::write_bytes(dir.path / "model.safetensors.index.json",
                    "{\"metadata\": {}, \"weight_map\": {" + map + "}}");
  CLIPScore model(CLIPScoreFiles::hf_folder(dir.path));
  EXPECT_LE(max_abs_diff(model.score(images(), captions()).scores, expected().at("hf.scores")),
            1e-4);
}

}  // namespace
}  // namespace microdit::eval
