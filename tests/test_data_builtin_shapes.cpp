// Tests for the built-in shapes dataset and its fixed evaluation prompts.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <tuple>

#include "microdit/data/builtin_shapes.h"

namespace microdit::data {
namespace {

// Pixels of `image` (3,S,S) in [-1,1] equal to palette colour k.
int64_t count_color(const at::Tensor& image, const at::Tensor& palette, int k) {
  const auto colour = (palette[k] * 2 - 1).view({3, 1, 1});
  return (image == colour).all(0).sum().item<int64_t>();
}

TEST(BuiltinShapes, SamplesHaveTheDocumentedShapesAndRange) {
  const BuiltinShapes dataset;
  EXPECT_EQ(dataset.size(), 4096);
  const Sample sample = dataset.get(0);
  EXPECT_EQ(sample.latents.sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_EQ(sample.caption.sizes(), (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(sample.latents.scalar_type(), at::kFloat);
  EXPECT_EQ(sample.caption.scalar_type(), at::kFloat);
  EXPECT_EQ(sample.latents.min().item<float>(), -1.0f);
  EXPECT_EQ(sample.latents.max().item<float>(), 1.0f);
  EXPECT_THROW(dataset.get(4096), std::out_of_range);
  EXPECT_THROW(dataset.get(-1), std::out_of_range);
}

TEST(BuiltinShapes, SampleIsAFunctionOfSeedAndIndex) {
  const BuiltinShapes a, b;
  BuiltinShapesOptions options;
  options.seed = 1;
  const BuiltinShapes other(options);
  for (int64_t i : {17, 3, 4095, 3}) {
    EXPECT_TRUE(at::equal(a.get(i).latents, b.get(i).latents));
    EXPECT_TRUE(at::equal(a.get(i).caption, b.get(i).caption));
  }
  int64_t differing = 0;
  for (int64_t i = 0; i < 20; ++i) differing += !at::equal(a.get(i).latents, other.get(i).latents);
  EXPECT_GE(differing, 18);
  // get() hands out its own tensors.
  a.get(5).caption.zero_();
  EXPECT_TRUE(at::equal(a.get(5).caption, b.get(5).caption));
}

TEST(BuiltinShapes, CaptionDescribesTheImage) {
  const BuiltinShapes dataset;
  const auto palette = dataset.palette_rgb();
  for (int64_t i = 0; i < 300; ++i) {
    const ShapeSpec s = dataset.spec(i);
    const Sample sample = dataset.get(i);
    EXPECT_EQ(dataset.caption(i), "a " + dataset.color_names()[s.object] + " " +
                                      std::string(kShapeNames[s.shape]) + " on a " +
                                      dataset.color_names()[s.background] + " background");
    EXPECT_TRUE(at::equal(sample.caption, dataset.embedder().embed(dataset.caption(i))));
    ASSERT_NE(s.object, s.background);
    EXPECT_GE(s.size, 6);  // [ceil(0.35*16), floor(0.65*16)]
    EXPECT_LE(s.size, 10);
    EXPECT_GE(s.x0, 0);
    EXPECT_GE(s.y0, 0);
    EXPECT_LE(s.x0 + s.size, 16);
    EXPECT_LE(s.y0 + s.size, 16);
    // Every pixel is one of the two colours; the object lies in its bounding box.
    const int64_t object = count_color(sample.latents, palette, s.object);
    EXPECT_EQ(object + count_color(sample.latents, palette, s.background), 16 * 16);
    const auto box = sample.latents.slice(1, s.y0, s.y0 + s.size).slice(2, s.x0, s.x0 + s.size);
    EXPECT_EQ(count_color(box, palette, s.object), object);
    // The object's pixels are the shape's mask.
    const auto object_colour = (palette[s.object] * 2 - 1).view({3, 1, 1});
    EXPECT_TRUE(at::equal((sample.latents == object_colour).all(0), shape_mask(s, 16)));
    const double fill = static_cast<double>(object) / static_cast<double>(s.size * s.size);
    switch (s.shape) {
      case 0:  // circle: pi/4 of the box
        EXPECT_NEAR(fill, 0.785, 0.15) << "sample " << i;
        break;
      case 1:  // square
        EXPECT_EQ(fill, 1.0) << "sample " << i;
        break;
      default:  // triangle: half the box
        EXPECT_NEAR(fill, 0.5, 0.15) << "sample " << i;
    }
  }
}

TEST(BuiltinShapes, CoversEveryShapeAndColourPair) {
  const BuiltinShapes dataset;
  std::set<std::tuple<int, int, int>> seen;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const ShapeSpec s = dataset.spec(i);
    seen.insert({s.shape, s.object, s.background});
  }
  EXPECT_EQ(seen.size(), 3u * 6u * 5u);
}

TEST(BuiltinShapes, PaletteIsWellSeparated) {
  const auto names = palette_color_names(8);
  EXPECT_EQ(names, (std::vector<std::string>{"red", "green", "blue", "yellow", "white", "black",
                                             "magenta", "cyan"}));
  const auto rgb = palette_rgb(8);
  EXPECT_EQ(rgb.sizes(), (std::vector<int64_t>{8, 3}));
  for (int i = 0; i < 8; ++i) {
    for (int j = i + 1; j < 8; ++j) {
      EXPECT_GE((rgb[i] - rgb[j]).norm().item<double>(), 1.0) << names[i] << " vs " << names[j];
    }
  }
  BuiltinShapesOptions options;
  options.palette = 8;
  const BuiltinShapes dataset(options);
  EXPECT_EQ(dataset.color_names().size(), 8u);
  EXPECT_TRUE(at::equal(dataset.palette_rgb(), rgb));
  EXPECT_EQ(palette_color_names(2), (std::vector<std::string>{"red", "green"}));
}

TEST(BuiltinShapes, RejectsBadOptions) {
  auto with = [](auto change) {
    BuiltinShapesOptions options;
    change(options);
    return options;
  };
  EXPECT_THROW(BuiltinShapes(with([](auto& o) { o.palette = 9; })), std::invalid_argument);
  EXPECT_THROW(BuiltinShapes(with([](auto& o) { o.palette = 1; })), std::invalid_argument);
  EXPECT_THROW(BuiltinShapes(with([](auto& o) { o.caption_len = 6; })), std::invalid_argument);
  EXPECT_THROW(BuiltinShapes(with([](auto& o) { o.image_size = 3; })), std::invalid_argument);
  EXPECT_THROW(BuiltinShapes(with([](auto& o) { o.num_samples = 0; })), std::invalid_argument);
  const BuiltinShapes dataset;
  ShapeSpec outside;
  outside.size = 10;
  outside.x0 = 7;
  EXPECT_THROW(dataset.render(outside), std::invalid_argument);
  EXPECT_THROW(shape_mask(outside, 16), std::invalid_argument);
  ShapeSpec colourless;
  colourless.object = 6;  // past the palette of 6
  EXPECT_THROW(dataset.render(colourless), std::invalid_argument);
}

TEST(BuiltinShapes, ShapeSizesSpan35To65PercentOfTheImage) {
  for (auto [image_size, min, max] : {std::tuple{16, 6, 10}, std::tuple{8, 3, 5},
                                      std::tuple{4, 2, 2}, std::tuple{32, 12, 20}}) {
    const SizeRange sizes = shape_sizes(image_size);
    EXPECT_EQ(sizes.min, min) << image_size;
    EXPECT_EQ(sizes.max, max) << image_size;
  }
}

TEST(BuiltinShapes, OtherSizesWork) {
  BuiltinShapesOptions options;
  options.image_size = 32;
  options.num_samples = 10;
  options.caption_len = 12;
  options.caption_channels = 64;
  const BuiltinShapes dataset(options);
  const Sample sample = dataset.get(9);
  EXPECT_EQ(sample.latents.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(sample.caption.sizes(), (std::vector<int64_t>{12, 64}));
  EXPECT_TRUE(at::equal(sample.caption.slice(0, 7), at::zeros({5, 64})));
}

TEST(BuiltinShapes, GetIsFast) {
  const BuiltinShapes dataset;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < 2000; ++i) dataset.get(i);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds / 2000, 1e-3) << "one get() takes " << seconds / 2000 * 1e6 << " us";
}

TEST(FixedPrompts, CoverEveryOrderedColourPairOnce) {
  const auto prompts = fixed_prompts(6);
  ASSERT_EQ(prompts.size(), 30u);
  std::set<std::pair<int, int>> pairs;
  const auto names = palette_color_names(6);
  for (std::size_t k = 0; k < prompts.size(); ++k) {
    const EvalPrompt& p = prompts[k];
    EXPECT_NE(p.object, p.background);
    EXPECT_EQ(p.shape, static_cast<int>(k % 3));
    EXPECT_EQ(p.text, shape_caption(p.shape, p.object, p.background, names));
    EXPECT_EQ(p.colors(), (ColorReading{p.background, p.object}));
    pairs.insert({p.object, p.background});
  }
  EXPECT_EQ(pairs.size(), 30u);
  EXPECT_EQ(prompts.front().text, "a red circle on a green background");
  EXPECT_EQ(fixed_prompts(8).size(), 56u);
}

}  // namespace
}  // namespace microdit::data
