// Prompt match: the built-in demo's stand-in for CLIP score. A generated image of
// "a <object colour> <shape> on a <background colour> background" matches its prompt when both
// colours read back from the pixels are the prompted ones.
// Reading: every pixel takes its nearest palette colour (Euclidean RGB); the background is the
// majority colour over the border pixels, the object the most common colour among all pixels
// whose colour differs from the background (-1 if none). Ties go to the lower palette index.
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace microdit::data {

enum class PixelRange {
  kSigned,  // [-1, 1], as the model's pixel "latents"
  kUnit,    // [0, 1]
};

struct ColorReading {
  int background = -1;
  int object = -1;
  bool operator==(const ColorReading&) const = default;
};

// image (3,H,W), palette (P,3) in [0,1]. Pixels are clamped to the range first.
ColorReading read_colors(const at::Tensor& image, const at::Tensor& palette,
                         PixelRange range = PixelRange::kSigned);

// images (N,3,H,W) -> N readings.
std::vector<ColorReading> read_colors_batch(const at::Tensor& images, const at::Tensor& palette,
                                            PixelRange range = PixelRange::kSigned);

// Fraction of images whose reading equals `expected` (one per image).
double prompt_match(const at::Tensor& images, const std::vector<ColorReading>& expected,
                    const at::Tensor& palette, PixelRange range = PixelRange::kSigned);

// Prompt match of a guess uniform over ordered (object, background) pairs with object !=
// background: 1 / (P (P-1)).
double chance(int palette_size);

}  // namespace microdit::data
