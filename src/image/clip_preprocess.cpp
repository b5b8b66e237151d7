// CLIP image preprocessing of transformers and open_clip (see clip_preprocess.h).
#include "microdit/image/clip_preprocess.h"

#include <c10/util/StringUtil.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "microdit/io/tensor_map.h"

namespace microdit::image {
namespace {

constexpr std::string_view kWhat = "CLIPImageProcessor";

[[noreturn]] void unsupported(std::string_view key, const io::Json& value, std::string_view why) {
  throw std::invalid_argument(c10::str(kWhat, ": ", key, " = ", value.dump(), " ", why));
}

bool flag(const io::Json& json, std::string_view key, bool fallback) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_boolean()) unsupported(key, *value, "is not a boolean");
  return io::json_to_bool(*value);
}

// An edge of the resize or the crop: CLIP towers take 224 to 448 pixels; 4096 keeps a hostile
// file from asking for an image of many gigabytes.
int64_t check_edge(std::string_view key, int64_t edge) {
  if (edge < 1 || edge > 4096) {
    throw std::invalid_argument(c10::str(kWhat, ": ", key, " = ", edge, ", expected 1 to 4096"));
  }
  return edge;
}

void check_finite(std::string_view key, double value, bool positive) {
  if (!std::isfinite(value) || (positive && !(value > 0.0))) {
    throw std::invalid_argument(c10::str(kWhat, ": ", key, " = ", value, ", expected a ",
                                         positive ? "positive " : "", "finite number"));
  }
}

// size: 224 (the openai files' old form) or {"shortest_edge": 224}.
int64_t shortest_edge(const io::Json& json) {
  const io::Json* size = io::json_find(json, "size");
  if (size == nullptr || size->is_null()) return 224;
  if (const auto n = io::json_int64(*size)) return check_edge("size", *n);
  const io::Json* edge = io::json_find(*size, "shortest_edge");
  if (edge == nullptr || !io::json_int64(*edge) || size->size() != 1) {
    unsupported("size", *size, "is not supported (expected an integer or {\"shortest_edge\": n})");
  }
  return check_edge("size", io::json_to_int64(*edge));
}

// crop_size: 224 or {"height": 224, "width": 224}.
int64_t square_crop(const io::Json& json) {
  const io::Json* crop = io::json_find(json, "crop_size");
  if (crop == nullptr || crop->is_null()) return 224;
  if (const auto side = io::json_int64(*crop)) return check_edge("crop_size", *side);
  const io::Json* h = io::json_find(*crop, "height");
  const io::Json* w = io::json_find(*crop, "width");
  if (h == nullptr || w == nullptr || !io::json_int64(*h) ||
      io::json_int64(*h) != io::json_int64(*w)) {
    unsupported("crop_size", *crop, "is not supported (expected a square crop)");
  }
  return check_edge("crop_size", io::json_to_int64(*h));
}

std::array<double, 3> channel_values(const io::Json& json, std::string_view key,
                                     const std::array<double, 3>& fallback) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_array() || value->size() != 3) unsupported(key, *value, "is not 3 numbers");
  std::array<double, 3> out{};
  for (std::size_t c = 0; c < 3; ++c) out[c] = io::json_to_double(value->at(c));
  return out;
}

at::Tensor channel_tensor(const std::array<double, 3>& values) {  // (3,1,1) float32
  return at::tensor(std::vector<double>(values.begin(), values.end()), at::kDouble)
      .to(at::kFloat)
      .view({3, 1, 1});
}

}  // namespace

CLIPImagePreprocess CLIPImagePreprocess::from_hf_json(const io::Json& json) {
  if (!json.is_object()) {
    throw std::invalid_argument(c10::str(kWhat, ": expected a JSON object"));
  }
  if (const io::Json* resample = io::json_find(json, "resample");
      resample != nullptr && !resample->is_null() &&
      io::json_int64(*resample) != 3) {
    unsupported("resample", *resample, "is not supported (only 3, bicubic)");
  }
  CLIPImagePreprocess p;
  p.flavor = Flavor::hf;
  p.resize_to = flag(json, "do_resize", true) ? shortest_edge(json) : 0;
  p.crop_size = flag(json, "do_center_crop", true) ? square_crop(json) : 0;
  p.rescale_factor = 1.0;
  if (flag(json, "do_rescale", true)) {
    const io::Json* factor = io::json_find(json, "rescale_factor");
    p.rescale_factor =
        factor == nullptr || factor->is_null() ? 1.0 / 255.0 : io::json_to_double(*factor);
  }
  p.normalize = flag(json, "do_normalize", true);
  p.mean = channel_values(json, "image_mean", kOpenAIClipMean);
  p.std_dev = channel_values(json, "image_std", kOpenAIClipStd);
  check_finite("rescale_factor", p.rescale_factor, true);
  for (std::size_t c = 0; c < 3; ++c) {
    check_finite("image_mean", p.mean[c], false);
    check_finite("image_std", p.std_dev[c], true);
  }
  return p;
}

CLIPImagePreprocess CLIPImagePreprocess::open_clip(int64_t image_size) {
  CLIPImagePreprocess p;
  p.flavor = Flavor::open_clip;
  p.resize_to = image_size;
  p.crop_size = image_size;
  return p;
}

at::Tensor CLIPImagePreprocess::operator()(const at::Tensor& image) const {
  if (image.dim() != 3 || image.size(2) != 3 || image.scalar_type() != at::kByte) {
    throw std::invalid_argument(c10::str("CLIP preprocessing expects an (H,W,3) uint8 image, got ",
                                         image.scalar_type(), io::shape_string(image.sizes())));
  }
  at::Tensor x = image;  // (H,W,3) uint8
  if (resize_to > 0) x = resize_short_side(x, resize_to);
  if (crop_size > 0) {
    x = center_crop(x, crop_size,
                    flavor == Flavor::hf ? CropOffset::hf_floor : CropOffset::torchvision_round);
  }
  at::Tensor chw = x.permute({2, 0, 1});  // (3,S,S)
  // The rounding of each library: HF rescales in float64 and casts, ToTensor divides in float32.
  chw = flavor == Flavor::hf ? chw.to(at::kDouble).mul(rescale_factor).to(at::kFloat)
                             : chw.to(at::kFloat).div(255.0);
  if (normalize) chw = chw.sub(channel_tensor(mean)).div(channel_tensor(std_dev));
  return chw.contiguous();
}

at::Tensor CLIPImagePreprocess::batch(const std::vector<at::Tensor>& images) const {
  std::vector<at::Tensor> out;
  out.reserve(images.size());
  for (const at::Tensor& image : images) out.push_back((*this)(image));
  return at::stack(out);
}

}  // namespace microdit::image
