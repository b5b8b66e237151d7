#include "microdit/data/builtin_shapes.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace microdit::data {

namespace {

struct PaletteColor {
  std::string_view name;
  float r, g, b;
};

constexpr std::array<PaletteColor, kMaxPaletteSize> kPalette = {{
    {"red", 1, 0, 0},
    {"green", 0, 1, 0},
    {"blue", 0, 0, 1},
    {"yellow", 1, 1, 0},
    {"white", 1, 1, 1},
    {"black", 0, 0, 0},
    {"magenta", 1, 0, 1},
    {"cyan", 0, 1, 1},
}};

constexpr int kNumShapes = static_cast<int>(kShapeNames.size());

void check_palette_size(int palette_size) {
  if (palette_size < 2 || palette_size > kMaxPaletteSize) {
    throw std::invalid_argument(c10::str("built-in shapes: palette size must be in [2, ",
                                         kMaxPaletteSize, "], got ", palette_size));
  }
}

const BuiltinShapesOptions& validated(const BuiltinShapesOptions& o) {
  check_palette_size(o.palette);
  auto fail = [](const std::string& problem) {
    throw std::invalid_argument("built-in shapes: " + problem);
  };
  if (o.num_samples <= 0) fail(c10::str("num_samples must be positive, got ", o.num_samples));
  if (o.image_size < 4) fail(c10::str("image_size must be at least 4, got ", o.image_size));
  if (o.caption_len < 7) {
    fail(
        c10::str("caption_len must be at least 7 (the words of \"a red circle on a blue "
                 "background\"), got ",
                 o.caption_len));
  }
  if (o.caption_channels <= 0) {
    fail(c10::str("caption_channels must be positive, got ", o.caption_channels));
  }
  return o;
}

// Does the pixel (x, y) lie inside the shape? Pixel centres are tested in doubled coordinates,
// where they fall on odd integers, so the test is exact integer arithmetic.
bool covers(const ShapeSpec& s, int64_t x, int64_t y) {
  const int64_t dx = (2 * x + 1) - (2 * s.x0 + s.size);  // 2 (x + 1/2 - centre x)
  const int64_t dy = (2 * y + 1) - (2 * s.y0 + s.size);
  if (std::abs(dx) > s.size || std::abs(dy) > s.size) return false;  // outside the box
  switch (s.shape) {
    case 0:  // circle of diameter size
      return dx * dx + dy * dy <= s.size * s.size;
    case 1:  // square
      return true;
    default: {  // upright isosceles triangle: apex at the top middle, base the bottom edge
      const int64_t depth = (2 * y + 1) - 2 * s.y0;  // 2 (y + 1/2 - y0)
      return 2 * std::abs(dx) <= depth;
    }
  }
}

}  // namespace

SizeRange shape_sizes(int64_t image_size) {
  SizeRange sizes;
  sizes.min = std::max<int64_t>(1, (35 * image_size + 99) / 100);  // ceil(0.35 S)
  sizes.max = std::max(sizes.min, 65 * image_size / 100);           // floor(0.65 S)
  return sizes;
}

at::Tensor shape_mask(const ShapeSpec& spec, int64_t image_size) {
  const int64_t S = image_size;
  if (spec.shape < 0 || spec.shape >= kNumShapes || spec.size < 1 || spec.x0 < 0 || spec.y0 < 0 ||
      spec.x0 + spec.size > S || spec.y0 + spec.size > S) {
    throw std::invalid_argument(c10::str("built-in shapes: invalid spec (shape ", spec.shape,
                                         ", size ", spec.size, " at ", spec.x0, ",", spec.y0,
                                         ") for image size ", S));
  }
  auto mask = at::empty({S, S}, at::kBool);
  bool* data = mask.data_ptr<bool>();
  for (int64_t y = 0; y < S; ++y) {
    for (int64_t x = 0; x < S; ++x) data[y * S + x] = covers(spec, x, y);
  }
  return mask;
}

std::vector<std::string> palette_color_names(int palette_size) {
  check_palette_size(palette_size);
  std::vector<std::string> names;
  for (int k = 0; k < palette_size; ++k) names.emplace_back(kPalette[k].name);
  return names;
}

at::Tensor palette_rgb(int palette_size) {
  check_palette_size(palette_size);
  auto out = at::empty({palette_size, 3}, at::kFloat);
  float* data = out.data_ptr<float>();
  for (int k = 0; k < palette_size; ++k) {
    data[3 * k] = kPalette[k].r;
    data[3 * k + 1] = kPalette[k].g;
    data[3 * k + 2] = kPalette[k].b;
  }
  return out;
}

std::string shape_caption(int shape, int object, int background,
                          const std::vector<std::string>& color_names) {
  return c10::str("a ", color_names.at(object), " ", kShapeNames.at(shape), " on a ",
                  color_names.at(background), " background");
}

BuiltinShapes::BuiltinShapes(const BuiltinShapesOptions& options)
    : options_(validated(options)),
      color_names_(palette_color_names(options.palette)),
      palette_(data::palette_rgb(options.palette)),
      embedder_(options.caption_len, options.caption_channels) {
  const int P = options_.palette;
  caption_cache_.reserve(static_cast<std::size_t>(kNumShapes * P * P));
  for (int shape = 0; shape < kNumShapes; ++shape) {
    for (int object = 0; object < P; ++object) {
      for (int background = 0; background < P; ++background) {
        caption_cache_.push_back(
            embedder_.embed(shape_caption(shape, object, background, color_names_)));
      }
    }
  }
}

ShapeSpec BuiltinShapes::spec(int64_t index) const {
  check_index(index, size(), "built-in shapes");
  SplitMix64 rng(mix_seed(options_.seed, static_cast<uint64_t>(index)));
  const int64_t S = options_.image_size;
  const int P = options_.palette;
  ShapeSpec s;
  s.shape = static_cast<int>(rng.below(kNumShapes));
  s.object = static_cast<int>(rng.below(P));
  s.background = static_cast<int>(rng.below(P - 1));
  if (s.background >= s.object) ++s.background;
  const SizeRange sizes = shape_sizes(S);
  s.size = rng.between(sizes.min, sizes.max);
  s.x0 = rng.between(0, S - s.size);
  s.y0 = rng.between(0, S - s.size);
  return s;
}

std::string BuiltinShapes::caption(const ShapeSpec& spec) const {
  return shape_caption(spec.shape, spec.object, spec.background, color_names_);
}

std::string BuiltinShapes::caption(int64_t index) const { return caption(spec(index)); }

at::Tensor BuiltinShapes::render(const ShapeSpec& spec) const {
  const int64_t S = options_.image_size;
  const int P = options_.palette;
  if (spec.object < 0 || spec.object >= P || spec.background < 0 || spec.background >= P) {
    throw std::invalid_argument(c10::str("built-in shapes: invalid colours (object ", spec.object,
                                         ", background ", spec.background, ") for palette ", P));
  }
  const auto mask = shape_mask(spec, S);
  const bool* covered = mask.data_ptr<bool>();
  const PaletteColor& fg = kPalette[spec.object];
  const PaletteColor& bg = kPalette[spec.background];
  const std::array<float, 3> fg_signed = {2 * fg.r - 1, 2 * fg.g - 1, 2 * fg.b - 1};
  const std::array<float, 3> bg_signed = {2 * bg.r - 1, 2 * bg.g - 1, 2 * bg.b - 1};
  auto image = at::empty({3, S, S}, at::kFloat);  // (3,S,S)
  float* data = image.data_ptr<float>();
  for (int64_t i = 0; i < S * S; ++i) {
    const auto& rgb = covered[i] ? fg_signed : bg_signed;
    for (int64_t c = 0; c < 3; ++c) data[c * S * S + i] = rgb[c];
  }
  return image;
}

Sample BuiltinShapes::get(int64_t index) const {
  const ShapeSpec s = spec(index);
  const int P = options_.palette;
  return {render(s), caption_cache_[(s.shape * P + s.object) * P + s.background].clone()};
}

std::vector<EvalPrompt> fixed_prompts(int palette_size) {
  const auto names = palette_color_names(palette_size);
  std::vector<EvalPrompt> prompts;
  for (int object = 0; object < palette_size; ++object) {
    for (int background = 0; background < palette_size; ++background) {
      if (object == background) continue;
      const int shape = static_cast<int>(prompts.size()) % kNumShapes;
      prompts.push_back(
          {shape_caption(shape, object, background, names), shape, object, background});
    }
  }
  return prompts;
}

}  // namespace microdit::data
