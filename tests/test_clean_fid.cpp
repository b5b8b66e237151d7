// clean-fid's "clean" mode against clean-fid itself
// (scripts/reference/make_clean_fid_reference.py): Pillow's float ('F') bicubic resize, the
// features of a random TorchScript network with the calling convention of inception-2015-12-05.pt,
// and a whole folder as get_folder_features reads it; plus the errors for files that are not such a
// network.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "microdit/eval/clean_fid_inception.h"
#include "microdit/eval/image_folder.h"
#include "microdit/image/decode.h"
#include "microdit/image/resize.h"
#include "microdit/io/png.h"
#include "microdit/io/safetensors.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

const fs::path kDataDir = test::source_dir() / "tests/data/fid";
const fs::path kNetwork = kDataDir / "clean_inception_random.pt";
const fs::path kImages = kDataDir / "clean_images";

const io::TensorMap& reference() {
  static const io::TensorMap tensors =
      io::load_safetensors(kDataDir / "clean_fid_reference.safetensors");
  return tensors;
}

double max_abs_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// Bit for bit: same double coefficients, same summation order, one float rounding per pass.
TEST(CleanFID, FloatResizeMatchesPillowExactly) {
  int cases = 0;
  for (const auto& [key, input] : reference()) {
    if (!key.starts_with("resize/") || !key.ends_with("/input")) continue;
    const std::string name = key.substr(0, key.size() - std::string("/input").size());
    const at::Tensor& expected = reference().at(name + "/output");  // (h,w)
    const at::Tensor ours =
        image::pil_resize_bicubic_float(input, expected.size(1), expected.size(0));
    ASSERT_EQ(ours.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(at::equal(ours, expected))
        << name << ": max |ours - PIL| = " << max_abs_difference(ours, expected);
    ++cases;
  }
  EXPECT_EQ(cases, 8);
}

TEST(CleanFID, FloatResizeOfChannelsIsPerChannel) {
  const at::Tensor& input = reference().at("resize/up_37x53_to_61x90/input");  // (37,53)
  const at::Tensor hwc = at::stack({input, 255 - input, input * 0.5}, 2);
  const at::Tensor ours = image::pil_resize_bicubic_float(hwc, 90, 61);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_TRUE(at::equal(ours.select(2, c),
                          image::pil_resize_bicubic_float(hwc.select(2, c).contiguous(), 90, 61)))
        << "channel " << c;
  }
}

// (3,H,W) uint8 of one test image.
at::Tensor read_chw(const fs::path& file) {
  return image::read_image_rgb(file).permute({2, 0, 1}).contiguous();
}

// The network is float32 convolutions in another PyTorch build: agreement to float rounding.
constexpr double kFeatureTolerance = 1e-5;

TEST(CleanFID, FeaturesMatchCleanFid) {
  eval::CleanFIDInception net(kNetwork);
  int images = 0;
  for (const auto& file : eval::list_images(kImages)) {
    const at::Tensor& expected = reference().at("features/" + file.stem().string());  // (1,2048)
    const at::Tensor ours = net(read_chw(file).unsqueeze(0));
    ASSERT_EQ(ours.sizes(), expected.sizes()) << file;
    const double scale = expected.abs().max().item<double>();
    EXPECT_GT(scale, 0.01) << "features of " << file << " carry no signal";
    const double difference = max_abs_difference(ours, expected);
    std::cout << "[ clean-fid ] " << file.filename().string() << ": max |ours - clean-fid| "
              << difference << ", max |feature| " << scale << "\n";
    EXPECT_LE(difference, kFeatureTolerance * scale) << file;
    // uint8 and float inputs are the same images.
    EXPECT_TRUE(at::equal(ours, net(read_chw(file).unsqueeze(0).to(at::kFloat)))) << file;
    ++images;
  }
  EXPECT_EQ(images, 4);
}

TEST(CleanFID, FeaturesOnDevice_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  eval::CleanFIDInception cpu(kNetwork), cuda(kNetwork, at::Device(at::kCUDA));
  const auto file = eval::list_images(kImages).front();
  const at::Tensor expected = reference().at("features/" + file.stem().string());
  const at::Tensor ours = cuda(read_chw(file).unsqueeze(0)).cpu();
  EXPECT_EQ(ours.device().type(), at::kCPU);
  EXPECT_LE(max_abs_difference(ours, expected), 1e-3 * expected.abs().max().item<double>());
  EXPECT_LE(max_abs_difference(ours, cpu(read_chw(file).unsqueeze(0))),
            1e-3 * expected.abs().max().item<double>());
}

TEST(CleanFID, FolderMatchesGetFolderFeatures) {
  auto net = std::make_shared<eval::CleanFIDInception>(kNetwork);
  const auto folder = eval::folder_activations(
      [net](const at::Tensor& images) { return (*net)(images); }, kImages, {0, 3});
  const at::Tensor& expected = reference().at("folder_features");  // (4,2048)
  ASSERT_EQ(folder.activations.sizes(), expected.sizes());
  EXPECT_TRUE(folder.skipped.empty());
  const double scale = expected.abs().max().item<double>();
  const double difference = max_abs_difference(folder.activations, expected);
  std::cout << "[ clean-fid ] folder: max |ours - get_folder_features| " << difference
            << ", max |feature| " << scale << "\n";
  EXPECT_LE(difference, kFeatureTolerance * scale);
  // The rows differ (a resize or ordering bug could make them agree by accident otherwise).
  EXPECT_GT(max_abs_difference(expected[0], expected[1]), 100 * kFeatureTolerance * scale);
}

// A batch holds at most max_batch_bytes of images (one image at least), in file order, and the
// features do not depend on how the images were batched.
TEST(ImageFolder, BatchesStayWithinTheByteBudget) {
  test::TempDir dir{"image_folder_budget"};
  for (int i = 0; i < 5; ++i) {
    test::write_bytes(dir.path / ("img" + std::to_string(i) + ".png"),
                      io::encode_png(at::randint(0, 256, {8, 8, 3}, at::kByte)));
  }
  std::vector<int64_t> batches;
  const eval::FeatureExtractor extract = [&](const at::Tensor& images) {  // (B,3,8,8) uint8
    batches.push_back(images.size(0));
    return images.to(at::kFloat).flatten(1);
  };
  const auto together = eval::folder_activations(extract, dir.path, {0, 50});
  EXPECT_EQ(batches, (std::vector<int64_t>{5}));
  batches.clear();
  const int64_t one_image = 8 * 8 * 3;
  const auto budgeted = eval::folder_activations(extract, dir.path, {0, 50, 2 * one_image});
  EXPECT_EQ(batches, (std::vector<int64_t>{2, 2, 1}));
  EXPECT_TRUE(at::equal(budgeted.activations, together.activations));
  batches.clear();
  eval::folder_activations(extract, dir.path, {0, 50, 1});  // under one image: one at a time
  EXPECT_EQ(batches, (std::vector<int64_t>{1, 1, 1, 1, 1}));
}

// clean-fid resizes even a 299 x 299 image; Pillow's resize to the same size is a copy, so
// only the clip to [0, 255] acts.
TEST(CleanFID, ResizeOf299IsTheImage) {
  const at::Tensor image = at::rand({3, 299, 299}) * 300 - 20;
  EXPECT_TRUE(at::equal(eval::clean_fid_resize(image), image.clamp(0, 255)));
}

TEST(CleanFID, FilesThatAreNotTheNetworkAreClearErrors) {
  test::TempDir dir{"clean_fid"};
  const auto missing = (dir.path / "missing.pt").string();
  EXPECT_TRUE(test::throws_with([&] { eval::CleanFIDInception{missing}; }, missing,
                                {"cannot load as a TorchScript module"}));

  const auto no_layers = (dir.path / "no_layers.pt").string();
  torch::jit::Module plain("Plain");
  plain.define("def forward(self, x):\n  return x\n");
  plain.save(no_layers);
  EXPECT_TRUE(test::throws_with([&] { eval::CleanFIDInception{no_layers}; }, no_layers,
                                {"no `layers` submodule"}));

  // `layers` that keep the image: 3*299*299 values per image, not 2048.
  const auto wrong_output = (dir.path / "wrong_output.pt").string();
  torch::jit::Module layers("Layers");
  layers.define("def forward(self, x):\n  return x\n");
  torch::jit::Module base("Base");
  base.register_module("layers", layers);
  base.save(wrong_output);
  eval::CleanFIDInception net(wrong_output);
  EXPECT_TRUE(test::throws_with(
      [&] {
        net(at::zeros({2, 3, 8, 8}, at::kByte));
      },
      wrong_output, {"expected (2,2048)"}));
}

}  // namespace
}  // namespace microdit
