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

// For each output position: the first input index, the tap count and the normalized weights,
// computed as Pillow's precompute_coeffs does (in double, the filter argument scaled by
// 1 / filterscale) so that both the 8-bit and the float path round as Pillow does.
struct Taps {
  std::vector<int> first, count;
  std::vector<double> weights;  // out_size * ksize
  int ksize = 0;
};

// The filter support in input pixels: 2 (bicubic), widened by the scale when downsampling.
double support(int in_size, int out_size) {
  return 2.0 * std::max(static_cast<double>(in_size) / out_size, 1.0);
}

// Pillow's maximum tap count for one output pixel.
int kernel_size(int in_size, int out_size) {
  return static_cast<int>(std::ceil(support(in_size, out_size))) * 2 + 1;
}

Taps precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double reach = support(in_size, out_size);
  const double inverse_filterscale = 1.0 / filterscale;
  Taps t;
  t.ksize = kernel_size(in_size, out_size);
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * t.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(static_cast<int>(center - reach + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + reach + 0.5), in_size) - xmin;
    double* w = &t.weights[static_cast<size_t>(xx) * t.ksize];
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = bicubic((x + xmin - center + 0.5) * inverse_filterscale);
      total += w[x];
    }
    if (total != 0.0) {
      for (int x = 0; x < xmax; ++x) w[x] /= total;
    }
    t.first[xx] = xmin;
    t.count[xx] = xmax;
  }
  return t;
}

// uint8 images: fixed-point weights (Pillow's normalize_coeffs_8bpc), integer accumulation
// starting at one half, then shift and clip to 0..255.
struct Fixed8 {
  using Pixel = uint8_t;
  using Weight = int32_t;
  using Acc = int64_t;
  static Weight weight(double v) {
    const double fixed = v * (1 << kPrecisionBits);
    return static_cast<Weight>(v < 0 ? std::trunc(-0.5 + fixed) : std::trunc(0.5 + fixed));
  }
  static Acc start() { return Acc{1} << (kPrecisionBits - 1); }
  static Pixel store(Acc acc) {
    return static_cast<Pixel>(std::clamp<Acc>(acc >> kPrecisionBits, 0, 255));
  }
};

// float32 ('F') images: double weights, double accumulation, rounded to float per pass, no clip.
struct Float32 {
  using Pixel = float;
  using Weight = double;
  using Acc = double;
  static Weight weight(double v) { return v; }
  static Acc start() { return 0.0; }
  static Pixel store(Acc acc) { return static_cast<Pixel>(acc); }
};

// Resamples along one axis of an (rows, cols, C) buffer: `along_cols` true resamples the
// columns of each row (horizontal pass), false the rows of each column (vertical pass).
// Pillow runs the horizontal pass only over the rows the vertical pass reads; each row is
// computed independently, so running it over all rows gives the same values.
template <class K>
at::Tensor resample(const at::Tensor& in, int out_size, bool along_cols) {
  const int rows = static_cast<int>(in.size(0)), cols = static_cast<int>(in.size(1));
  const int C = static_cast<int>(in.size(2));
  const Taps t = precompute(along_cols ? cols : rows, out_size);
  std::vector<typename K::Weight> weights(t.weights.size());
  std::transform(t.weights.begin(), t.weights.end(), weights.begin(), K::weight);
  auto out =
      at::empty({along_cols ? rows : out_size, along_cols ? out_size : cols, C}, in.options());
  const auto* src = in.data_ptr<typename K::Pixel>();
  auto* dst = out.data_ptr<typename K::Pixel>();
  const int out_cols = along_cols ? out_size : cols;
  const int outer = along_cols ? rows : cols;
  for (int o = 0; o < outer; ++o) {
    for (int k = 0; k < out_size; ++k) {
      const auto* w = &weights[static_cast<size_t>(k) * t.ksize];
      for (int c = 0; c < C; ++c) {
        typename K::Acc acc = K::start();
        for (int j = 0; j < t.count[k]; ++j) {
          const int i = t.first[k] + j;
          const size_t at = along_cols ? (static_cast<size_t>(o) * cols + i) * C + c
                                       : (static_cast<size_t>(i) * cols + o) * C + c;
          acc += static_cast<typename K::Acc>(src[at]) * w[j];
        }
        const size_t to = along_cols ? (static_cast<size_t>(o) * out_cols + k) * C + c
                                     : (static_cast<size_t>(k) * out_cols + o) * C + c;
        dst[to] = K::store(acc);
      }
    }
  }
  return out;
}

// Pillow resamples each axis whose size changes; the same size returns a copy. The order of the
// two passes changes the rounding of the intermediate image. Pillow 13 (the reference) runs the
// vertical pass first exactly when its kernel has more taps than the horizontal one, and the
// horizontal pass first otherwise. This rule is inferred from its outputs (bit-exact on 17 size
// pairs, including the cases of scripts/reference/make_clean_fid_reference.py), not read from
// its source; older Pillow always went horizontal first.
template <class K>
at::Tensor resize_hwc(const at::Tensor& image, int64_t out_w, int64_t out_h) {
  if (out_w <= 0 || out_h <= 0) {
    throw std::invalid_argument(c10::str("resize to ", out_w, "x", out_h, " is empty"));
  }
  at::Tensor x = image.contiguous();
  const int in_h = static_cast<int>(x.size(0)), in_w = static_cast<int>(x.size(1));
  const int h = static_cast<int>(out_h), w = static_cast<int>(out_w);
  const bool vertical_first = kernel_size(in_h, h) > kernel_size(in_w, w);
  if (vertical_first && h != in_h) x = resample<K>(x, h, /*along_cols=*/false);
  if (w != in_w) x = resample<K>(x, w, /*along_cols=*/true);
  if (!vertical_first && h != in_h) x = resample<K>(x, h, /*along_cols=*/false);
  return x.is_same(image) ? x.clone() : x;
}
}  // namespace

at::Tensor pil_resize_bicubic(const at::Tensor& image, int64_t out_w, int64_t out_h) {
  if (image.dim() != 3 || image.scalar_type() != at::kByte) {
    throw std::invalid_argument(c10::str("resize expects an (H,W,C) uint8 image, got ",
                                         image.sizes(), " ", image.scalar_type()));
  }
  return resize_hwc<Fixed8>(image, out_w, out_h);
}

at::Tensor pil_resize_bicubic_float(const at::Tensor& image, int64_t out_w, int64_t out_h) {
  if ((image.dim() != 2 && image.dim() != 3) || image.scalar_type() != at::kFloat) {
    throw std::invalid_argument(
        c10::str("float resize expects an (H,W) or (H,W,C) float32 image, got ", image.sizes(), " ",
                 image.scalar_type()));
  }
  const at::Tensor hwc = image.dim() == 2 ? image.unsqueeze(2) : image;
  const at::Tensor out = resize_hwc<Float32>(hwc.cpu(), out_w, out_h);
  return image.dim() == 2 ? out.squeeze(2) : out;
}

at::Tensor resize_short_side(const at::Tensor& image, int64_t size) {
  const int64_t h = image.size(0), w = image.size(1);
  const int64_t short_side = std::min(h, w), long_side = std::max(h, w);
  const double exact_long = static_cast<double>(size) * static_cast<double>(long_side) /
                            static_cast<double>(short_side);
  // A long, thin image becomes a large one: a 100,000 x 1 PNG of a few hundred bytes would become
  // 256 x 25,600,000 pixels at a short side of 256. Refused where Pillow's decompression-bomb
  // check warns.
  if (!(exact_long * static_cast<double>(size) <= kMaxResizedPixels)) {
    throw std::invalid_argument(c10::str(
        "a ", w, "x", h, " image resized to a short side of ", size, " would have ",
        static_cast<int64_t>(std::min(exact_long * static_cast<double>(size), 0x1p62)),
        " pixels, over the limit of ", kMaxResizedPixels,
        " (its aspect ratio is too extreme for that size)"));
  }
  const auto new_long = static_cast<int64_t>(exact_long);
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
