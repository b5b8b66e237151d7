// Tests for reading colours back from images and the prompt-match score (the shape reading's own
// tests are in test_data_shape_match.cpp).
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "microdit/data/builtin_shapes.h"
#include "microdit/data/prompt_match.h"

namespace microdit::data {
namespace {

// The first n samples drawn after `change(spec)` (n,3,S,S), and what their own prompts ask for.
template <class Change>
std::pair<at::Tensor, std::vector<PromptReading>> drawn(const BuiltinShapes& dataset, int64_t n,
                                                        Change change) {
  std::vector<at::Tensor> images;
  std::vector<PromptReading> expected;
  for (int64_t i = 0; i < n; ++i) {
    ShapeSpec s = dataset.spec(i);
    expected.push_back({{s.background, s.object}, s.shape});
    change(s);
    images.push_back(dataset.render(s));
  }
  return {at::stack(images), expected};
}

TEST(PromptMatch, CleanDatasetImagesMatchFully) {
  for (auto [palette, size, n] :
       {std::tuple{6, 16, 4096}, std::tuple{8, 8, 1000}, std::tuple{2, 4, 200}}) {
    const BuiltinShapes dataset({.num_samples = n, .palette = palette, .image_size = size});
    const auto [images, expected] = drawn(dataset, n, [](ShapeSpec&) {});
    const auto signed_match = prompt_match(images, expected, dataset.palette_rgb());
    EXPECT_EQ(signed_match.color, 1.0) << "palette " << palette << " size " << size;
    const auto unit_match =
        prompt_match((images + 1) / 2, expected, dataset.palette_rgb(), PixelRange::kUnit);
    EXPECT_EQ(unit_match.color, 1.0);
    EXPECT_EQ(unit_match.shape, signed_match.shape);
    // At 16 pixels no two shapes the generator draws cover the same pixels; at 4 and 8 a circle
    // of 2 or 3 pixels is its square (test_data_shape_match.cpp).
    if (size == 16) EXPECT_EQ(signed_match.both, 1.0);
  }
}

TEST(PromptMatch, FixedPromptsDrawnCleanlyMatch) {
  const BuiltinShapes dataset;
  std::vector<at::Tensor> images;
  std::vector<PromptReading> expected;
  for (const EvalPrompt& p : fixed_prompts(6)) {
    images.push_back(dataset.render({p.shape, p.object, p.background, 8, 4, 4}));
    expected.push_back(p.reading());
  }
  const auto match = prompt_match(at::stack(images), expected, dataset.palette_rgb());
  EXPECT_EQ(match.color, 1.0);
  EXPECT_EQ(match.shape, 1.0);
  EXPECT_EQ(match.both, 1.0);
}

TEST(PromptMatch, PureNoiseScoresLow) {
  const auto palette = palette_rgb(6);
  const auto prompts = fixed_prompts(6);
  std::vector<PromptReading> expected;
  for (int i = 0; i < 300; ++i) expected.push_back(prompts[i % prompts.size()].reading());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(/*seed_in=*/1234);
  const auto noise = at::rand({300, 3, 16, 16}, generator) * 2 - 1;
  const auto match = prompt_match(noise, expected, palette);
  EXPECT_LT(match.color, 0.15) << "chance is " << chance(6).color;
  EXPECT_EQ(match.shape, 0.0);  // scattered pixels are no shape
  EXPECT_EQ(match.both, 0.0);
}

TEST(PromptMatch, SwappedColoursDoNotMatch) {
  const BuiltinShapes dataset;
  const auto palette = dataset.palette_rgb();
  const auto [swapped, expected] =
      drawn(dataset, 100, [](ShapeSpec& s) { std::swap(s.object, s.background); });
  const auto colors = read_colors_batch(swapped, palette);
  for (std::size_t i = 0; i < colors.size(); ++i) {
    EXPECT_EQ(colors[i], (ColorReading{expected[i].colors.object, expected[i].colors.background}));
  }
  const auto match = prompt_match(swapped, expected, palette);
  EXPECT_EQ(match.color, 0.0);
  EXPECT_EQ(match.shape, 1.0);
  EXPECT_EQ(match.both, 0.0);
}

TEST(PromptMatch, OtherShapesDoNotMatch) {
  const BuiltinShapes dataset;
  const int shapes = static_cast<int>(kShapeNames.size());
  int turn = 0;  // alternately the next and the one after
  const auto [images, expected] = drawn(dataset, 100, [&](ShapeSpec& s) {
    s.shape = (s.shape + 1 + turn) % shapes;
    turn = 1 - turn;
  });
  const auto match = prompt_match(images, expected, dataset.palette_rgb());
  EXPECT_EQ(match.color, 1.0);
  EXPECT_EQ(match.shape, 0.0);
  EXPECT_EQ(match.both, 0.0);
}

TEST(PromptMatch, ReadsBackgroundByBorderMajorityAndObjectByCount) {
  const auto palette = palette_rgb(6);  // red, green, blue, yellow, white, black
  auto unit = [&](int k) { return palette[k].view({3, 1, 1}).expand({3, 8, 8}).clone(); };
  auto image = unit(2);  // blue everywhere
  EXPECT_EQ(read_colors(image, palette, PixelRange::kUnit), (ColorReading{2, -1}));
  image.slice(1, 0, 1).copy_(unit(0).slice(1, 0, 1));  // a red top row: 8 of 28
  image.slice(1, 3, 5).slice(2, 3, 5).copy_(unit(3).slice(1, 0, 2).slice(2, 0, 2));  // 4 yellow
  EXPECT_EQ(read_colors(image, palette, PixelRange::kUnit), (ColorReading{2, 0}));
  // Slightly off colours and out-of-range values read as their nearest palette colour.
  const auto noisy = (image * 1.3 - 0.15).clamp(-0.5, 1.5);
  EXPECT_EQ(read_colors(noisy, palette, PixelRange::kUnit), (ColorReading{2, 0}));
}

TEST(PromptMatch, ChanceAndErrors) {
  EXPECT_DOUBLE_EQ(chance(6).color, 1.0 / 30);
  EXPECT_DOUBLE_EQ(chance(6).shape, 1.0 / 3);
  EXPECT_DOUBLE_EQ(chance(6).both, 1.0 / 90);
  EXPECT_DOUBLE_EQ(chance(8).color, 1.0 / 56);
  EXPECT_THROW(chance(1), std::invalid_argument);
  const auto palette = palette_rgb(6);
  EXPECT_THROW(read_colors(at::zeros({1, 3, 4, 4}), palette), std::invalid_argument);
  EXPECT_THROW(read_colors(at::zeros({4, 4, 3}), palette), std::invalid_argument);
  EXPECT_THROW(read_colors(at::zeros({3, 4, 4}), at::zeros({6, 4})), std::invalid_argument);
  EXPECT_THROW(prompt_match(at::zeros({2, 3, 4, 4}), {{{0, 1}, 0}}, palette),
               std::invalid_argument);
  EXPECT_THROW(prompt_match(at::zeros({1, 3, 4, 5}), {{{0, 1}, 0}}, palette),
               std::invalid_argument);  // the shape reading needs square images
}

}  // namespace
}  // namespace microdit::data
