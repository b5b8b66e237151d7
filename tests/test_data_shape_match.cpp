// Tests for reading the shape back from images: the generator's own renders, clean, noisy and in
// other colours, read as their shape; images with no object, or no shape, read as none.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <iostream>

#include "microdit/data/builtin_shapes.h"
#include "microdit/data/shape_match.h"

namespace microdit::data {
namespace {

// The first n samples' images (n,3,S,S) and their shapes.
std::pair<at::Tensor, std::vector<int>> renders(const BuiltinShapes& dataset, int64_t n) {
  std::vector<at::Tensor> images;
  std::vector<int> shapes;
  for (int64_t i = 0; i < n; ++i) {
    images.push_back(dataset.get(i).latents);
    shapes.push_back(dataset.spec(i).shape);
  }
  return {at::stack(images), shapes};
}

double accuracy(const std::vector<int>& read, const std::vector<int>& truth) {
  EXPECT_EQ(read.size(), truth.size());
  int64_t right = 0;
  for (std::size_t i = 0; i < read.size(); ++i) right += read[i] == truth[i];
  return static_cast<double>(right) / static_cast<double>(truth.size());
}

TEST(ShapeMatch, ReadsTheGeneratorsOwnRenders) {
  for (auto [palette, size, n] :
       {std::tuple{6, 16, 1000}, std::tuple{8, 12, 500}, std::tuple{6, 32, 200}}) {
    const BuiltinShapes dataset({.num_samples = n, .palette = palette, .image_size = size});
    const auto [images, shapes] = renders(dataset, n);
    const double correct = accuracy(read_shapes(images, dataset.palette_rgb()), shapes);
    std::cout << "shape reading of " << n << " clean " << size << "x" << size << " renders: "
              << 100 * correct << "% correct\n";
    // The true template is among the templates (IoU 1) and no other covers the same pixels.
    EXPECT_EQ(correct, 1.0) << "size " << size;
  }
}

TEST(ShapeMatch, ReadsNoisyRenders) {
  const BuiltinShapes dataset;
  const auto [images, shapes] = renders(dataset, 1000);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(/*seed_in=*/7);
  // Gaussian noise of 0.5 per channel on [-1, 1]: about 5% of the pixels read another colour.
  const auto noisy = images + 0.5 * at::randn(images.sizes(), generator);
  const double correct = accuracy(read_shapes(noisy, dataset.palette_rgb()), shapes);
  std::cout << "shape reading of 1000 noisy 16x16 renders: " << 100 * correct << "% correct\n";
  EXPECT_GE(correct, 0.95);
}

TEST(ShapeMatch, ShapeDoesNotDependOnTheColours) {
  BuiltinShapesOptions options;
  options.palette = 8;
  const BuiltinShapes dataset(options);
  for (int64_t i = 0; i < 6; ++i) {
    ShapeSpec s = dataset.spec(i);
    std::vector<at::Tensor> images;
    for (s.object = 0; s.object < 8; ++s.object) {
      for (s.background = 0; s.background < 8; ++s.background) {
        if (s.object != s.background) images.push_back(dataset.render(s));
      }
    }
    for (int shape : read_shapes(at::stack(images), dataset.palette_rgb())) {
      EXPECT_EQ(shape, s.shape) << "sample " << i;
    }
  }
}

TEST(ShapeMatch, NoObjectOrScatteredPixelsReadNoShape) {
  const auto palette = palette_rgb(6);
  const auto blank = palette[2].view({1, 3, 1, 1}).expand({4, 3, 16, 16}) * 2 - 1;
  for (int shape : read_shapes(blank, palette)) EXPECT_EQ(shape, -1);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(/*seed_in=*/1234);
  const auto noise = at::rand({300, 3, 16, 16}, generator) * 2 - 1;
  for (int shape : read_shapes(noise, palette)) EXPECT_EQ(shape, -1);
}

TEST(ShapeMatch, TiesGoToTheLowerShape) {
  // At 8 pixels the generator draws sizes 3 to 5; a circle of 3 covers its whole box.
  const ShapeSpec circle{.shape = 0, .size = 3, .x0 = 2, .y0 = 1};
  ShapeSpec square = circle;
  square.shape = 1;
  ASSERT_TRUE(at::equal(shape_mask(circle, 8), shape_mask(square, 8)));
  BuiltinShapesOptions options;
  options.image_size = 8;
  const BuiltinShapes dataset(options);
  const auto images = at::stack({dataset.render(circle), dataset.render(square)});
  EXPECT_EQ(read_shapes(images, dataset.palette_rgb()), (std::vector<int>{0, 0}));
}

}  // namespace
}  // namespace microdit::data
