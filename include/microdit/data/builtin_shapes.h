// The built-in dataset, needing no downloads: S x S RGB images of one filled shape (circle,
// square or triangle) of one palette colour on a background of another, captioned
// "a <object colour> <shape> on a <background colour> background". The "latents" are the pixels
// themselves, (3,S,S) in [-1,1], and captions are embedded by the built-in CaptionEmbedder.
// Sample i is a pure function of (seed, i), drawn on demand in microseconds.
// Palette: corners of the RGB cube, so any two colours are at least 1 apart.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "microdit/data/caption_embedder.h"
#include "microdit/data/dataset.h"
#include "microdit/data/prompt_match.h"

namespace microdit::data {

inline constexpr int kMaxPaletteSize = 8;
inline constexpr std::array<std::string_view, 3> kShapeNames = {"circle", "square", "triangle"};

// The first `palette_size` of: red, green, blue, yellow, white, black, magenta, cyan.
std::vector<std::string> palette_color_names(int palette_size);
at::Tensor palette_rgb(int palette_size);  // (P,3) float32 in [0,1]

// "a red circle on a blue background".
std::string shape_caption(int shape, int object, int background,
                          const std::vector<std::string>& color_names);

struct BuiltinShapesOptions {
  int64_t num_samples = 4096;
  int palette = 6;  // P in [2, 8]
  int64_t image_size = 16;
  int64_t caption_len = 8;  // >= 7, the words of a caption
  int64_t caption_channels = 32;
  uint64_t seed = 0;
};

// What sample i shows: the shape's bounding box is [x0, x0+size) x [y0, y0+size), fully inside
// the image, with size drawn uniformly from shape_sizes(S).
struct ShapeSpec {
  int shape = 0;  // index into kShapeNames
  int object = 0;
  int background = 1;
  int64_t size = 1;
  int64_t x0 = 0;
  int64_t y0 = 0;
};

// The sizes the generator draws at image size S: [ceil(0.35 S), floor(0.65 S)].
struct SizeRange {
  int64_t min = 1;
  int64_t max = 1;
};
SizeRange shape_sizes(int64_t image_size);

// The pixels of an S x S image that spec's shape covers, (S,S) bool: what render() draws in the
// object colour (the colours of `spec` are not used). The one definition of the shapes, so that
// the shape reading (data/shape_match.h) compares against exactly what the generator draws.
at::Tensor shape_mask(const ShapeSpec& spec, int64_t image_size);

// One prompt of the fixed evaluation set.
struct EvalPrompt {
  std::string text;
  int shape;
  int object;
  int background;
  ColorReading colors() const { return {background, object}; }
  PromptReading reading() const { return {colors(), shape}; }  // what a matching image reads as
};

class BuiltinShapes : public Dataset {
 public:
  explicit BuiltinShapes(const BuiltinShapesOptions& options = {});

  int64_t size() const override { return options_.num_samples; }
  Sample get(int64_t index) const override;

  const BuiltinShapesOptions& options() const { return options_; }
  const std::vector<std::string>& color_names() const { return color_names_; }
  at::Tensor palette_rgb() const { return palette_.clone(); }  // (P,3) in [0,1]
  const CaptionEmbedder& embedder() const { return embedder_; }

  ShapeSpec spec(int64_t index) const;
  std::string caption(int64_t index) const;
  std::string caption(const ShapeSpec& spec) const;
  // (3,S,S) float32 in [-1,1]; any spec, so tests can draw variations of a sample.
  at::Tensor render(const ShapeSpec& spec) const;

 private:
  BuiltinShapesOptions options_;
  std::vector<std::string> color_names_;
  at::Tensor palette_;  // (P,3)
  CaptionEmbedder embedder_;
  std::vector<at::Tensor> caption_cache_;  // (L,Cy) per (shape, object, background)
};

// Every ordered (object, background) pair with object != background, object-major; the shape
// cycles circle, square, triangle through the list. P (P-1) prompts.
std::vector<EvalPrompt> fixed_prompts(int palette_size);

}  // namespace microdit::data
