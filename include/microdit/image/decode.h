// Image files to RGB pixels as the official data preparation reads them:
// np.asarray(PIL.Image.open(f).convert('RGB')). That means alpha is dropped (not composited),
// grayscale is replicated, palettes are expanded, EXIF orientation is NOT applied, and 16-bit PNGs
// are reduced as Pillow does: 16-bit grayscale (mode I;16) is clipped to 255, other 16-bit color
// types keep the high byte of each sample.
// PNG: libspng in every build, so a file decodes the same everywhere, Adam7 interlacing included.
// JPEG: libjpeg where the build has it (MICRODIT_HAVE_LIBJPEG), set up as Pillow sets it up, its
// warnings dropped as Pillow drops them. WebP, BMP: OpenCV's imdecode where the build has it
// (MICRODIT_HAVE_OPENCV). Otherwise a one-line error.
// Errors are std::runtime_error whose message starts with the name given (or the path).
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace microdit::image {

enum class ImageFormat { png, jpeg, webp, gif, bmp, tiff, unknown };

// By the magic bytes at the start of the data.
ImageFormat detect_image_format(std::string_view bytes);
const char* image_format_name(ImageFormat format);  // "PNG", "JPEG", ...

// The formats decode_image_rgb accepts: PNG, JPEG, WebP and BMP, told by their first bytes
// whatever the file's name (docs/prepare.md). Others (GIF, TIFF, and what OpenCV would also read:
// HDR, PFM, PGM, ...) are refused.
bool is_accepted_image_format(ImageFormat format);

// Encoded bytes -> (H, W, 3) uint8 RGB on the CPU.
at::Tensor decode_image_rgb(std::string_view bytes, const std::string& name_for_errors);

// The file at `path`, decoded as decode_image_rgb does; errors name the path.
at::Tensor read_image_rgb(const std::filesystem::path& path);

// The PNG decoder behind decode_image_rgb: every color type and bit depth, interlaced or not.
at::Tensor decode_png_rgb(std::string_view bytes, const std::string& name_for_errors);

}  // namespace microdit::image
