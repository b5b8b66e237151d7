#include "microdit/image/resize.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace microdit::image {
namespace {
constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed-point coefficients

double bicubic(double x) {  // Keys cubic with a = -0.5, support 2
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output position: the first input index, the tap count and fixed-point weights.
struct Taps {
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // out_size * ksize
  int ksize = 0;
};

Taps precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = bicubic((x + xmin - center + 0.5) / filterscale);
      total += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = total != 0.0 ? w[x] / total : w[x];
      const double fixed = v * (1 << kPrecisionBits);
      t.weights[static_cast<size_t>(xx) * t.ksize + x] =
          static_cast<int32_t>(v < 0 ? std::trunc(-0.5 + fixed) : std::trunc(0.5 + fixed));
    }
    t.first[xx] = xmin;
    t.count[xx] = xmax;
  }
  return t;
}

uint8_t clip8(int64_t value) {
  value >>= kPrecisionBits;
  return static_cast<uint8_t>(std::clamp<int64_t>(value, 0, 255));
}

// Resamples along one axis of an (rows, cols, C) uint8 buffer: `along_cols` true resamples the
// columns of each row (horizontal pass), false the rows of each column (vertical pass).
at::Tensor resample(const at::Tensor& in, int out_size, bool along_cols) {
  const int rows = static_cast<int>(in.size(0)), cols = static_cast<int>(in.size(1));
  const int C = static_cast<int>(in.size(2));
  const Taps t = precompute(along_cols ? cols : rows, out_size);
  auto out = at::empty({along_cols ? rows : out_size, along_cols ? out_size : cols, C}, at::kByte);
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int out_cols = along_cols ? out_size : cols;
  const int outer = along_cols ? rows : cols;
  for (int o = 0; o < outer; ++o) {
    for (int k = 0; k < out_size; ++k) {
      const int32_t* w = &t.weights[static_cast<size_t>(k) * t.ksize];
      for (int c = 0; c < C; ++c) {
        int64_t acc = int64_t{1} << (kPrecisionBits - 1);
        for (int j = 0; j < t.count[k]; ++j) {
          const int i = t.first[k] + j;
          const size_t at = along_cols ? (static_cast<size_t>(o) * cols + i) * C + c
                                       : (static_cast<size_t>(i) * cols + o) * C + c;
          acc += static_cast<int64_t>(src[at]) * w[j];
        }
        const size_t to = along_cols ? (static_cast<size_t>(o) * out_cols + k) * C + c
                                     : (static_cast<size_t>(k) * out_cols + o) * C + c;
        dst[to] = clip8(acc);
      }
    }
  }
  return out;
}
}  // namespace

at::Tensor pil_resize_bicubic(const at::Tensor& image, int64_t out_w, int64_t out_h) {
  if (image.dim() != 3 || image.scalar_type() != at::kByte) {
    throw std::invalid_argument(c10::str("resize expects an (H,W,C) uint8 image, got ",
                                         image.sizes(), " ", image.scalar_type()));
  }
  if (out_w <= 0 || out_h <= 0) {
    throw std::invalid_argument(c10::str("resize to ", out_w, "x", out_h, " is empty"));
  }
  at::Tensor x = image.contiguous();
  // Pillow: horizontal pass first (when the width changes), then vertical.
  if (out_w != x.size(1)) x = resample(x, static_cast<int>(out_w), /*along_cols=*/true);
  if (out_h != x.size(0)) x = resample(x, static_cast<int>(out_h), /*along_cols=*/false);
  return x;
}

at::Tensor resize_short_side(const at::Tensor& image, int64_t size) {
  const int64_t h = image.size(0), w = image.size(1);
  const int64_t short_side = std::min(h, w), long_side = std::max(h, w);
  const auto new_long = static_cast<int64_t>(static_cast<double>(size) * long_side / short_side);
  return h <= w ? pil_resize_bicubic(image, new_long, size)
                : pil_resize_bicubic(image, size, new_long);
}

at::Tensor center_crop(const at::Tensor& image, int64_t size, CropOffset offset) {
  const int64_t h = image.size(0), w = image.size(1);
  if (h < size || w < size) {
    throw std::invalid_argument(
        c10::str("center crop of ", size, " from a ", h, "x", w, " image needs padding"));
  }
  // Python's round() rounds halves to even, as std::nearbyint in the default rounding mode.
  auto margin = [&](int64_t extra) {
    return offset == CropOffset::hf_floor ? extra / 2
                                          : static_cast<int64_t>(std::nearbyint(extra / 2.0));
  };
  const int64_t top = margin(h - size), left = margin(w - size);
  return image.narrow(0, top, size).narrow(1, left, size).contiguous();
}

at::Tensor to_model_input(const at::Tensor& image) {
  return image.permute({2, 0, 1}).to(at::kFloat).div(255.0).sub(0.5).div(0.5).contiguous();
}

at::Tensor preprocess(const at::Tensor& image, int64_t size) {
  return to_model_input(center_crop(resize_short_side(image, size), size));
}

}  // namespace microdit::image
