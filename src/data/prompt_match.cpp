#include "microdit/data/prompt_match.h"

#include <c10/util/StringUtil.h>

#include <stdexcept>

#include "microdit/data/builtin_shapes.h"
#include "microdit/data/shape_match.h"
#include "microdit/io/tensor_map.h"

namespace microdit::data {

namespace {

void check_palette(const at::Tensor& palette) {
  if (palette.dim() != 2 || palette.size(1) != 3 || palette.size(0) < 2) {
    throw std::invalid_argument(c10::str("prompt match: palette must be (P,3) with P >= 2, got ",
                                         io::shape_string(palette.sizes())));
  }
}

// Index of the largest count; the lowest index wins ties; -1 when every count is zero.
int argmax_count(const std::vector<int64_t>& counts) {
  int best = -1;
  for (std::size_t k = 0; k < counts.size(); ++k) {
    if (counts[k] > 0 && (best < 0 || counts[k] > counts[best])) best = static_cast<int>(k);
  }
  return best;
}

ColorReading read_labels(const int64_t* labels, int64_t H, int64_t W, int64_t P) {
  std::vector<int64_t> border(static_cast<std::size_t>(P), 0);
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      if (y == 0 || y == H - 1 || x == 0 || x == W - 1) ++border[labels[y * W + x]];
    }
  }
  ColorReading reading;
  reading.background = argmax_count(border);
  std::vector<int64_t> rest(static_cast<std::size_t>(P), 0);
  for (int64_t i = 0; i < H * W; ++i) {
    if (labels[i] != reading.background) ++rest[labels[i]];
  }
  reading.object = argmax_count(rest);
  return reading;
}

}  // namespace

at::Tensor palette_labels(const at::Tensor& images, const at::Tensor& palette, PixelRange range) {
  check_palette(palette);
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) < 1 || images.size(3) < 1) {
    throw std::invalid_argument(
        c10::str("prompt match: images must be (N,3,H,W), got ", io::shape_string(images.sizes())));
  }
  auto rgb = images.detach().to(at::kCPU, at::kFloat);
  if (range == PixelRange::kSigned) rgb = (rgb + 1) / 2;
  rgb = rgb.clamp(0, 1).permute({0, 2, 3, 1});  // (N,H,W,3)
  auto colors = palette.detach().to(at::kCPU, at::kFloat);
  auto distance2 = (rgb.unsqueeze(3) - colors).pow(2).sum(-1);  // (N,H,W,P)
  return distance2.argmin(-1).contiguous();                     // (N,H,W) int64
}

std::vector<ColorReading> read_colors_of_labels(const at::Tensor& labels, int64_t palette_size) {
  const int64_t N = labels.size(0), H = labels.size(1), W = labels.size(2);
  const int64_t* data = labels.data_ptr<int64_t>();
  std::vector<ColorReading> readings;
  readings.reserve(static_cast<std::size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    readings.push_back(read_labels(data + n * H * W, H, W, palette_size));
  }
  return readings;
}

std::vector<ColorReading> read_colors_batch(const at::Tensor& images, const at::Tensor& palette,
                                            PixelRange range) {
  return read_colors_of_labels(palette_labels(images, palette, range), palette.size(0));
}

ColorReading read_colors(const at::Tensor& image, const at::Tensor& palette, PixelRange range) {
  if (image.dim() != 3) {
    throw std::invalid_argument(
        c10::str("read_colors: image must be (3,H,W), got ", io::shape_string(image.sizes())));
  }
  return read_colors_batch(image.unsqueeze(0), palette, range).front();
}

PromptMatch prompt_match(const at::Tensor& images, const std::vector<PromptReading>& expected,
                         const at::Tensor& palette, PixelRange range) {
  const auto labels = palette_labels(images, palette, range);
  const auto colors = read_colors_of_labels(labels, palette.size(0));
  const auto shapes = read_shapes_of_labels(labels, colors);
  if (colors.size() != expected.size()) {
    throw std::invalid_argument(c10::str("prompt_match: ", colors.size(), " images but ",
                                         expected.size(), " expected readings"));
  }
  PromptMatch match;
  if (colors.empty()) return match;
  for (std::size_t i = 0; i < colors.size(); ++i) {
    const bool color = colors[i] == expected[i].colors, shape = shapes[i] == expected[i].shape;
    match.color += color;
    match.shape += shape;
    match.both += color && shape;
  }
  const auto n = static_cast<double>(colors.size());
  return {match.color / n, match.shape / n, match.both / n};
}

PromptMatch chance(int palette_size) {
  if (palette_size < 2) {
    throw std::invalid_argument(
        c10::str("chance: palette size must be at least 2, got ", palette_size));
  }
  const double color = 1.0 / (static_cast<double>(palette_size) * (palette_size - 1));
  const double shape = 1.0 / static_cast<double>(kShapeNames.size());
  return {color, shape, color * shape};
}

}  // namespace microdit::data
