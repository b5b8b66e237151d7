// Tests for reading colours back from images and the prompt-match score.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "microdit/data/builtin_shapes.h"
#include "microdit/data/prompt_match.h"

namespace microdit::data {
namespace {

// The first n samples' images (n,3,S,S) and their prompted colours.
std::pair<at::Tensor, std::vector<ColorReading>> clean_images(const BuiltinShapes& dataset,
                                                              int64_t n) {
  std::vector<at::Tensor> images;
  std::vector<ColorReading> expected;
  for (int64_t i = 0; i < n; ++i) {
    images.push_back(dataset.get(i).latents);
    const ShapeSpec s = dataset.spec(i);
    expected.push_back({s.background, s.object});
  }
  return {at::stack(images), expected};
}

TEST(PromptMatch, CleanDatasetImagesMatchFully) {
  for (auto [palette, size, n] :
       {std::tuple{6, 16, 4096}, std::tuple{8, 8, 1000}, std::tuple{2, 4, 200}}) {
    BuiltinShapesOptions options;
    options.palette = palette;
    options.image_size = size;
    options.num_samples = n;
    const BuiltinShapes dataset(options);
    const auto [images, expected] = clean_images(dataset, n);
    EXPECT_EQ(prompt_match(images, expected, dataset.palette_rgb()), 1.0)
        << "palette " << palette << " size " << size;
    EXPECT_EQ(prompt_match((images + 1) / 2, expected, dataset.palette_rgb(), PixelRange::kUnit),
              1.0);
  }
}

TEST(PromptMatch, FixedPromptsDrawnCleanlyMatch) {
  const BuiltinShapes dataset;
  std::vector<at::Tensor> images;
  std::vector<ColorReading> expected;
  for (const EvalPrompt& p : fixed_prompts(6)) {
    images.push_back(dataset.render({p.shape, p.object, p.background, 8, 4, 4}));
    expected.push_back(p.colors());
  }
  EXPECT_EQ(prompt_match(at::stack(images), expected, dataset.palette_rgb()), 1.0);
}

TEST(PromptMatch, PureNoiseScoresLow) {
  const auto palette = palette_rgb(6);
  const auto prompts = fixed_prompts(6);
  std::vector<ColorReading> expected;
  for (int i = 0; i < 300; ++i) expected.push_back(prompts[i % prompts.size()].colors());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(/*seed_in=*/1234);
  const auto noise = at::rand({300, 3, 16, 16}, generator) * 2 - 1;
  const double score = prompt_match(noise, expected, palette);
  EXPECT_LT(score, 0.15) << "chance is " << chance(6);
}

TEST(PromptMatch, SwappedColoursDoNotMatch) {
  const BuiltinShapes dataset;
  std::vector<at::Tensor> swapped;
  std::vector<ColorReading> expected;
  for (int64_t i = 0; i < 100; ++i) {
    ShapeSpec s = dataset.spec(i);
    expected.push_back({s.background, s.object});
    std::swap(s.object, s.background);
    swapped.push_back(dataset.render(s));
    EXPECT_EQ(read_colors(swapped.back(), dataset.palette_rgb()),
              (ColorReading{s.background, s.object}));
  }
  EXPECT_EQ(prompt_match(at::stack(swapped), expected, dataset.palette_rgb()), 0.0);
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
  EXPECT_DOUBLE_EQ(chance(6), 1.0 / 30);
  EXPECT_DOUBLE_EQ(chance(8), 1.0 / 56);
  EXPECT_THROW(chance(1), std::invalid_argument);
  const auto palette = palette_rgb(6);
  EXPECT_THROW(read_colors(at::zeros({1, 3, 4, 4}), palette), std::invalid_argument);
  EXPECT_THROW(read_colors(at::zeros({4, 4, 3}), palette), std::invalid_argument);
  EXPECT_THROW(read_colors(at::zeros({3, 4, 4}), at::zeros({6, 4})), std::invalid_argument);
  EXPECT_THROW(prompt_match(at::zeros({2, 3, 4, 4}), {{0, 1}}, palette), std::invalid_argument);
}

}  // namespace
}  // namespace microdit::data
