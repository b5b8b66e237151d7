// CLIP's image preprocessing, as the two reference implementations apply it to uint8 images:
//
//              transformers CLIPImageProcessor (slow)     open_clip image_transform (eval)
//   resize     shortest edge to `size`, the other          torchvision Resize(size, BICUBIC)
//              int(size * long / short), PIL bicubic       on the PIL image: the same pixels
//   crop       (h - crop) // 2                             int(round((h - crop) / 2))
//   rescale    float64 x * rescale_factor, then float32    float32 x / 255 (ToTensor)
//   normalize  float32 (x - mean) / std                    the same
// Both resize with Pillow's uint8 bicubic filter, reproduced bit for bit by pil_resize_bicubic.
// Legend: H W input size, S crop size, B batch.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "microdit/image/resize.h"
#include "microdit/io/json.h"

namespace microdit::image {

// OpenAI CLIP's normalization, used by openai/clip-vit-* and most open_clip models.
inline constexpr std::array<double, 3> kOpenAIClipMean = {0.48145466, 0.4578275, 0.40821073};
inline constexpr std::array<double, 3> kOpenAIClipStd = {0.26862954, 0.26130258, 0.27577711};

struct CLIPImagePreprocess {
  enum class Flavor { hf, open_clip };

  Flavor flavor = Flavor::hf;
  int64_t resize_to = 224;  // shortest edge; 0: no resize (do_resize false)
  int64_t crop_size = 224;  // S; 0: no crop (do_center_crop false)
  double rescale_factor = 1.0 / 255.0;  // hf only; open_clip divides by 255 in float32
  bool normalize = true;
  std::array<double, 3> mean = kOpenAIClipMean;
  std::array<double, 3> std_dev = kOpenAIClipStd;

  // transformers' preprocessor_config.json of a CLIPImageProcessor: size (an integer or
  // {"shortest_edge"}), crop_size (an integer or a square {"height","width"}), do_resize,
  // do_center_crop, do_rescale, rescale_factor, do_normalize, image_mean, image_std; keys left
  // out take CLIPImageProcessor's defaults. Resampling other than bicubic (3) and other size
  // forms throw std::invalid_argument naming the key.
  static CLIPImagePreprocess from_hf_json(const io::Json& json);
  // open_clip's eval transform for `image_size` with its default resize mode ("shortest") and
  // OpenAI mean/std.
  static CLIPImagePreprocess open_clip(int64_t image_size);

  // (H,W,3) uint8 -> (3,S,S) float32.
  at::Tensor operator()(const at::Tensor& image) const;
  // Images of any sizes -> (B,3,S,S) float32.
  at::Tensor batch(const std::vector<at::Tensor>& images) const;
};

}  // namespace microdit::image
