// Image preprocessing of the official data preparation (torchvision on PIL images):
// Resize(s, BICUBIC) of the short side, CenterCrop(s), ToTensor, Normalize(0.5, 0.5).
// The resize reproduces Pillow's (13) antialiased bicubic resampling bit for bit (separable
// fixed-point convolution, one pass per axis, the longer kernel first, 8-bit rounding after
// each); our own code because OpenCV's resize differs and Pillow's C core is not a library one
// can link. The float variant is Pillow's resize of a mode 'F' image, which clean-fid's "clean"
// FID mode uses to resize to 299 x 299 without quantizing.
// Legend: H W image size, C channels (uint8 images are HWC, model inputs CHW).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace microdit::image {

// (H,W,C) uint8 -> (out_h,out_w,C) uint8, as PIL's Image.resize(..., Image.BICUBIC).
at::Tensor pil_resize_bicubic(const at::Tensor& image, int64_t out_w, int64_t out_h);

// (H,W) or (H,W,C) float32 -> (out_h,out_w[,C]) float32, as
// Image.fromarray(channel, mode='F').resize((out_w, out_h), Image.BICUBIC) applied to each
// channel: double weights and accumulation, float32 after each pass, no clipping. CPU result.
at::Tensor pil_resize_bicubic_float(const at::Tensor& image, int64_t out_w, int64_t out_h);

// Pillow's Image.MAX_IMAGE_PIXELS: the most pixels resize_short_side makes (decoding allows twice
// as many, where Pillow raises DecompressionBombError).
inline constexpr int64_t kMaxResizedPixels = 89'478'485;

// torchvision Resize(size) on a PIL image: the short side becomes `size`, the long side
// int(size * long / short). Throws std::invalid_argument, naming the sizes, when the result would
// have more than kMaxResizedPixels pixels (an image of extreme aspect ratio).
at::Tensor resize_short_side(const at::Tensor& image, int64_t size);

// How a center crop places an odd margin: torchvision's CenterCrop takes
// int(round((h - size) / 2)) (halves to even), transformers' center_crop (h - size) // 2.
enum class CropOffset { torchvision_round, hf_floor };

// CenterCrop(size) of an image at least `size` on each side.
at::Tensor center_crop(const at::Tensor& image, int64_t size,
                       CropOffset offset = CropOffset::torchvision_round);

// (H,W,3) uint8 -> (3,H,W) float32 in [-1, 1] (ToTensor then Normalize(0.5, 0.5)).
at::Tensor to_model_input(const at::Tensor& image);

// resize_short_side + center_crop + to_model_input.
at::Tensor preprocess(const at::Tensor& image, int64_t size);

}  // namespace microdit::image
