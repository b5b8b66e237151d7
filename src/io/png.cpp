#include "microdit/io/png.h"

#include <c10/util/StringUtil.h>

#include <spng.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>

#include "microdit/io/atomic_file.h"

namespace microdit::io {
namespace {

// zlib's default level: about as small as 9 on sample grids at a fraction of the time.
constexpr int kCompressionLevel = 6;

uint8_t color_type(int64_t channels) {
  switch (channels) {
    case 1:
      return SPNG_COLOR_TYPE_GRAYSCALE;
    case 2:
      return SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
    case 3:
      return SPNG_COLOR_TYPE_TRUECOLOR;
    case 4:
      return SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
  }
  throw std::invalid_argument(
      c10::str("encode_png: image has ", channels, " channels, expected 1, 2, 3 or 4"));
}

// Throws when a libspng call fails.
void check(int error, const char* what) {
  if (error != 0) throw std::runtime_error(c10::str("encode_png: ", what, ": ", spng_strerror(error)));
}

}  // namespace

std::string encode_png(const at::Tensor& image) {
  if (image.dim() != 3 || image.scalar_type() != at::kByte) {
    throw std::invalid_argument(c10::str("encode_png: expected a uint8 (H, W, C) tensor, got ",
                                         image.scalar_type(), " of shape ", image.sizes()));
  }
  const int64_t height = image.size(0), width = image.size(1), channels = image.size(2);
  const uint8_t type = color_type(channels);
  if (height < 1 || width < 1 || height > INT32_MAX || width > INT32_MAX) {
    throw std::invalid_argument(
        c10::str("encode_png: image size ", height, "x", width, " is empty or too large"));
  }
  const at::Tensor pixels = image.to(at::kCPU).contiguous();

  const std::unique_ptr<spng_ctx, decltype(&spng_ctx_free)> ctx(spng_ctx_new(SPNG_CTX_ENCODER),
                                                                &spng_ctx_free);
  if (!ctx) throw std::bad_alloc();
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(width);
  ihdr.height = static_cast<uint32_t>(height);
  ihdr.bit_depth = 8;
  ihdr.color_type = type;
  check(spng_set_ihdr(ctx.get(), &ihdr), "IHDR");
  check(spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1), "buffer output");
  check(spng_set_option(ctx.get(), SPNG_IMG_COMPRESSION_LEVEL, kCompressionLevel), "level");
  check(spng_encode_image(ctx.get(), pixels.data_ptr<uint8_t>(),
                          static_cast<std::size_t>(pixels.numel()), SPNG_FMT_PNG,
                          SPNG_ENCODE_FINALIZE),
        "encoding");
  std::size_t size = 0;
  int error = 0;
  // The buffer is ours to free (spng.h: spng_get_png_buffer).
  const std::unique_ptr<void, decltype(&std::free)> buffer(
      spng_get_png_buffer(ctx.get(), &size, &error), &std::free);
  check(error, "output");
  return {static_cast<const char*>(buffer.get()), size};
}

void write_png(const std::filesystem::path& path, const at::Tensor& image) {
  const std::string bytes = encode_png(image);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

at::Tensor make_grid(const at::Tensor& images, int64_t columns, int64_t padding) {
  if (images.dim() != 4 || !at::isFloatingType(images.scalar_type()) || images.size(0) < 1) {
    throw std::invalid_argument(c10::str("make_grid: expected a floating (N, C, H, W) tensor with ",
                                         "N >= 1, got ", images.scalar_type(), " of shape ",
                                         images.sizes()));
  }
  if (columns < 1 || padding < 0) {
    throw std::invalid_argument(c10::str("make_grid: columns (", columns,
                                         ") must be >= 1 and padding (", padding, ") >= 0"));
  }
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = std::min(columns, n);
  const int64_t rows = (n + cols - 1) / cols;
  const int64_t cell_h = h + padding, cell_w = w + padding;
  auto grid = at::zeros({c, rows * cell_h + padding, cols * cell_w + padding},
                        images.options().dtype(at::kFloat).device(at::kCPU));  // (C, H', W')
  const auto tiles = images.detach().to(at::kCPU, at::kFloat).clamp(0.0, 1.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = (i / cols) * cell_h + padding, left = (i % cols) * cell_w + padding;
    grid.narrow(1, top, h).narrow(2, left, w).copy_(tiles[i]);
  }
  // torchvision save_image: mul(255).add_(0.5).clamp_(0, 255) then truncation to uint8.
  return grid.mul(255).add_(0.5).clamp_(0, 255).to(at::kByte).permute({1, 2, 0}).contiguous();
}

}  // namespace microdit::io
