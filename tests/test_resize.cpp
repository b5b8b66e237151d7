// Image preprocessing against Pillow and torchvision (scripts/reference/make_resize_reference.py).
#include <gtest/gtest.h>

#include <filesystem>

#include "microdit/image/resize.h"
#include "microdit/io/safetensors.h"
#include "test_support.h"

namespace microdit {
namespace {

const auto kCases =
    test::source_dir() / "tests/data/resize/cases.safetensors";

int64_t max_grey_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kInt) - b.to(at::kInt)).abs().max().item<int64_t>();
}

TEST(Resize, MatchesPillowBicubic) {
  const auto ref = io::load_safetensors(kCases);
  int cases = 0;
  for (int i = 0; ref.count("input." + std::to_string(i)); ++i, ++cases) {
    const auto s = std::to_string(i);
    const auto size = ref.at("pil_size." + s);
    auto ours = image::pil_resize_bicubic(ref.at("input." + s), size[0].item<int64_t>(),
                                          size[1].item<int64_t>());
    ASSERT_EQ(ours.sizes(), ref.at("pil." + s).sizes()) << "case " << i;
    EXPECT_LE(max_grey_difference(ours, ref.at("pil." + s)), 0) << "case " << i;
  }
  EXPECT_GE(cases, 5);
}

TEST(Resize, MatchesTorchvisionResizeAndCenterCrop) {
  const auto ref = io::load_safetensors(kCases);
  for (int i = 0; ref.count("input." + std::to_string(i)); ++i) {
    const auto s = std::to_string(i);
    const auto size = ref.at("tv_size." + s)[0].item<int64_t>();
    auto ours = image::center_crop(image::resize_short_side(ref.at("input." + s), size), size);
    ASSERT_EQ(ours.sizes(), ref.at("tv." + s).sizes()) << "case " << i;
    EXPECT_LE(max_grey_difference(ours, ref.at("tv." + s)), 1) << "case " << i;
  }
}

TEST(Resize, ShortSideAndCropOffsets) {
  auto img = at::zeros({30, 47, 3}, at::kByte);
  EXPECT_EQ(image::resize_short_side(img, 20).sizes(), (at::IntArrayRef{20, 31, 3}));  // int(31.33)
  // Python's round: (47 - 20) / 2 = 13.5 rounds to 14, (45 - 20) / 2 = 12.5 to 12.
  auto ramp = at::arange(47, at::kByte).view({1, 47, 1}).expand({30, 47, 3}).contiguous();
  EXPECT_EQ(image::center_crop(ramp, 20)[0][0][0].item<uint8_t>(), 14);
  auto ramp45 = at::arange(45, at::kByte).view({1, 45, 1}).expand({20, 45, 3}).contiguous();
  EXPECT_EQ(image::center_crop(ramp45, 20)[0][0][0].item<uint8_t>(), 12);
}

TEST(Resize, ModelInputIsSignedCHW) {
  auto img = at::full({2, 3, 3}, 255, at::kByte);
  img[0][0][1] = 0;
  auto x = image::to_model_input(img);
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{3, 2, 3}));
  EXPECT_EQ(x[1][0][0].item<float>(), -1.0f);
  EXPECT_EQ(x[0][1][2].item<float>(), 1.0f);
}

TEST(Resize, RejectsBadInput) {
  EXPECT_THROW(image::pil_resize_bicubic(at::zeros({4, 4}, at::kByte), 2, 2),
               std::invalid_argument);
  EXPECT_THROW(image::pil_resize_bicubic(at::zeros({4, 4, 3}), 2, 2), std::invalid_argument);
  EXPECT_THROW(image::center_crop(at::zeros({4, 8, 3}, at::kByte), 5), std::invalid_argument);
}

// A 1 x 100,000 image at a short side of 256 would be 256 x 25,600,000: refused, naming the sizes,
// before anything is allocated. At the limit itself the resize goes ahead.
TEST(Resize, AnExtremeAspectRatioIsRefusedBeforeResizing) {
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { image::resize_short_side(at::zeros({1, 100'000, 3}, at::kByte), 256); },
      "a 100000x1 image resized to a short side of 256 would have 6553600000 pixels, over the "
      "limit of 89478485",
      {}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { image::resize_short_side(at::zeros({300'000, 2, 3}, at::kByte), 600); },
      "a 2x300000 image resized to a short side of 600 would have", {"over the limit"}));
  // 2 x 993 at a short side of 300: 300 x 148,950 = 44,685,000 pixels, under the limit.
  EXPECT_EQ(image::resize_short_side(at::zeros({2, 993, 3}, at::kByte), 300).sizes(),
            (at::IntArrayRef{300, 148'950, 3}));
}

}  // namespace
}  // namespace microdit
