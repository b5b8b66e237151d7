// Prompt match: the built-in demo's stand-in for CLIP score. A generated image of
// "a <object colour> <shape> on a <background colour> background" is read back from its pixels
// and scored in parts: its colour match (both colours are the prompted ones), its shape match
// (the shape is, data/shape_match.h) and its prompt match (all three are).
// Colour reading: every pixel takes its nearest palette colour (Euclidean RGB); the background is
// the majority colour over the border pixels, the object the most common colour among all pixels
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

// What an image shows, or what the prompt asks it to show.
struct PromptReading {
  ColorReading colors;
  int shape = -1;  // index into kShapeNames (data/builtin_shapes.h); -1: none
};

// Fractions of the images that match their prompt's colours, shape, and both (the whole prompt).
struct PromptMatch {
  double color = 0;
  double shape = 0;
  double both = 0;
};

// images (N,3,H,W) -> (N,H,W) int64: each pixel's nearest palette colour, after clamping.
at::Tensor palette_labels(const at::Tensor& images, const at::Tensor& palette,
                          PixelRange range = PixelRange::kSigned);

// image (3,H,W), palette (P,3) in [0,1]. Pixels are clamped to the range first.
ColorReading read_colors(const at::Tensor& image, const at::Tensor& palette,
                         PixelRange range = PixelRange::kSigned);

// Labels (N,H,W) of palette_labels with a palette of P colours -> N readings.
std::vector<ColorReading> read_colors_of_labels(const at::Tensor& labels, int64_t palette_size);

// images (N,3,H,W) -> N readings.
std::vector<ColorReading> read_colors_batch(const at::Tensor& images, const at::Tensor& palette,
                                            PixelRange range = PixelRange::kSigned);

// images (N,3,S,S) scored against `expected`, one per image.
PromptMatch prompt_match(const at::Tensor& images, const std::vector<PromptReading>& expected,
                         const at::Tensor& palette, PixelRange range = PixelRange::kSigned);

// The match of a guess uniform over ordered (object, background) pairs with object != background
// and over the shapes: colours 1 / (P (P-1)), shape 1 / 3, both their product.
PromptMatch chance(int palette_size);

}  // namespace microdit::data
