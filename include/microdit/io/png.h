// PNG files through libspng, deflate level 6 with adaptive filters: sample grids, microdit-sample's
// and COCO folders' images, TensorBoard images. Also make_grid, the torchvision.utils.make_grid +
// save_image layout.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace microdit::io {

// image: uint8 (H, W, C) with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA), any device or
// layout. Returns the bytes of an 8-bit, non-interlaced PNG of that colour type, compressed at zlib
// level 6. Throws std::invalid_argument naming what is wrong.
std::string encode_png(const at::Tensor& image);

// encode_png written atomically: a reader sees the old file or the complete new one.
void write_png(const std::filesystem::path& path, const at::Tensor& image);

// images: (N, C, H, W) floating in [0, 1] (clamped). Lays them out in rows of `columns` tiles with
// `padding` black pixels around and between them, then rounds to uint8 as torchvision's
// save_image does (x * 255 + 0.5). Returns (H', W', C) uint8 on the CPU, with
// H' = rows * (H + padding) + padding and W' = min(columns, N) * (W + padding) + padding.
at::Tensor make_grid(const at::Tensor& images, int64_t columns, int64_t padding = 2);

}  // namespace microdit::io
