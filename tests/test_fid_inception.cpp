// FID Inception-v3 against pytorch-fid: tests/data/fid_inception/ was written by
// scripts/reference/make_fid_inception_reference.py (pytorch-fid's InceptionV3, block 3,
// use_fid_inception=True) with synthetic weights that `synthetic_tensor` below recomputes bit
// for bit, since the 95 MB of weights are too large to commit.
#include <gtest/gtest.h>

#include "test_support.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/eval/fid_inception.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"

namespace microdit {
namespace {

using eval::FIDInceptionV3;

const std::filesystem::path kDataDir =
    test::source_dir() / "tests/data/fid_inception";
constexpr double kTolerance = 1e-4;  // ||ours - pytorch-fid|| / ||pytorch-fid||

uint32_t fnv1a32(std::string_view text) {
  uint32_t h = 2166136261u;
  for (unsigned char byte : text) h = (h ^ byte) * 16777619u;
  return h;
}

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// (scale, offset) of the generator's formula: value = c * scale + offset, c in [-1, 1).
std::pair<double, double> value_range(const std::string& key, int64_t fan_in) {
  if (key.ends_with("conv.weight")) return {std::sqrt(6.0 / static_cast<double>(fan_in)), 0.0};
  if (key.ends_with("bn.weight")) return {0.2, 1.0};
  if (key.ends_with("bn.bias") || key.ends_with("running_mean")) return {0.1, 0.0};
  if (key.ends_with("running_var")) return {0.5, 1.0};
  if (key.starts_with("fc.")) return {0.01, 0.0};
  throw std::runtime_error("no synthetic formula for " + key);
}

// The generator's synthetic_tensor, in the same float64 operations and order.
at::Tensor synthetic_tensor(const std::string& key, const std::vector<int64_t>& shape) {
  at::Tensor out = at::empty(shape, at::kFloat);
  const int64_t n = out.numel();
  const auto [scale, offset] = value_range(key, n / shape[0]);
  const uint64_t base = static_cast<uint64_t>(fnv1a32(key)) << 32;
  float* data = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix64(base | static_cast<uint64_t>(i)) >> 11) * 0x1p-53;
    const double c = u * 2.0 - 1.0;
    data[i] = static_cast<float>(c * scale + offset);
  }
  return out;
}

// keys.json: every key of pytorch-fid's weights file with its shape, in file order.
std::vector<std::pair<std::string, std::vector<int64_t>>> weight_file_keys() {
  const io::Json keys = io::read_json_file(kDataDir / "keys.json");
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& [key, shape] : keys.items()) {
    std::vector<int64_t> sizes;
    for (const io::Json& d : shape) sizes.push_back(d.get<int64_t>());
    out.emplace_back(key, std::move(sizes));
  }
  return out;
}

// The generator's weights, fc included, as a weights file would hold them.
io::TensorMap synthetic_weights() {
  io::TensorMap weights;
  for (const auto& [key, shape] : weight_file_keys()) weights[key] = synthetic_tensor(key, shape);
  return weights;
}

const io::TensorMap& reference() {
  static const io::TensorMap tensors = io::load_safetensors(kDataDir / "reference.safetensors");
  return tensors;
}

at::Tensor reference_images(const std::string& name) {
  return reference().at("images_" + name).to(at::kFloat) / 255;
}

double relative_error(const at::Tensor& ours, const at::Tensor& expected) {
  return (ours.to(at::kDouble) - expected.to(at::kDouble)).norm().item<double>() /
         expected.to(at::kDouble).norm().item<double>();
}

TEST(FIDInception, ParameterNamesAndShapesEqualTheWeightsFile) {
  FIDInceptionV3 model;
  io::TensorMap ours = io::state_dict(*model);
  std::erase_if(ours, [](const auto& item) { return item.first.ends_with("num_batches_tracked"); });
  const auto keys = weight_file_keys();
  EXPECT_EQ(ours.size() + 2, keys.size());  // the file also holds fc.weight and fc.bias
  for (const auto& [key, shape] : keys) {
    if (key.starts_with("fc.")) continue;
    const auto it = ours.find(key);
    ASSERT_NE(it, ours.end()) << "we have no parameter named " << key;
    EXPECT_EQ(it->second.sizes(), at::IntArrayRef(shape)) << key;
  }
}

TEST(FIDInception, ResizeEqualsBilinearInterpolate) {
  for (const std::string name : {"64", "300x200"}) {
    SCOPED_TRACE(name);
    const at::Tensor resized = eval::resize_for_fid_inception(reference_images(name));
    ASSERT_EQ(resized.sizes(), at::IntArrayRef({resized.size(0), 3, 299, 299}));
    const at::Tensor expected = reference().at("resized_" + name);
    const at::Tensor channel0 = resized.narrow(1, 0, 1);
    EXPECT_LE((channel0 - expected).abs().max().item<double>(), 1e-6);
  }
}

TEST(FIDInception, FeaturesMatchPytorchFid) {
  const test::TempDir dir("fid_inception_weights");
  const auto path = dir.path / "pt_inception.safetensors";
  io::save_safetensors(path, synthetic_weights());
  FIDInceptionV3 model;
  eval::load_fid_inception_weights(model, path);
  at::NoGradGuard no_grad;
  for (const std::string name : {"64", "300x200"}) {
    SCOPED_TRACE(name);
    if (name == "300x200") model->train();  // BatchNorm must keep using the running statistics
    const at::Tensor features = model->forward(reference_images(name));
    const at::Tensor expected = reference().at("features_" + name);
    ASSERT_EQ(features.sizes(), expected.sizes());
    const double error = relative_error(features, expected);
    ::testing::Test::RecordProperty("rel_err_" + name, c10::str(error));
    EXPECT_LE(error, kTolerance);
  }
}

TEST(FIDInception, MissingKeyInSafetensorsIsNamed) {
  const test::TempDir dir("fid_inception_missing");
  const auto path = dir.path / "incomplete.safetensors";
  io::TensorMap weights = synthetic_weights();
  weights.erase("Mixed_7c.branch_pool.bn.running_var");
  io::save_safetensors(path, weights);
  FIDInceptionV3 model;
  EXPECT_TRUE(test::throws_with([&] { eval::load_fid_inception_weights(model, path); },
                                path.string(),
                                {"1 problem", "missing key Mixed_7c.branch_pool.bn.running_var"}));
}

TEST(FIDInception, MissingKeysInPthAreNamed) {
  // Holds Conv2d_1a_3x3.bn.* and fc.bias only: fc.bias must not count as unexpected.
  const auto path = kDataDir / "missing_keys.pth";
  FIDInceptionV3 model;
  const auto load = [&] { eval::load_fid_inception_weights(model, path); };
  EXPECT_TRUE(test::throws_with(load, path.string(), {"missing key Conv2d_1a_3x3.conv.weight",
                                                      "missing key Mixed_7c.branch_pool.conv.weight"}));
  try {
    load();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).find("fc.bias"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find("Conv2d_1a_3x3.bn.weight"), std::string::npos);
  }
}

TEST(FIDInception, RejectsInputThatIsNotRgbImages) {
  FIDInceptionV3 model;
  EXPECT_THROW(model->forward(at::zeros({1, 1, 32, 32})), std::invalid_argument);
  EXPECT_THROW(model->forward(at::zeros({3, 32, 32})), std::invalid_argument);
  EXPECT_THROW(model->forward(at::zeros({1, 3, 32, 32}, at::kByte)), std::invalid_argument);
}

}  // namespace
}  // namespace microdit
