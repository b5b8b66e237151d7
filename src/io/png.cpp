#include "microdit/io/png.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <array>
#include <stdexcept>

#include "microdit/io/atomic_file.h"

namespace microdit::io {
namespace {

constexpr std::size_t kMaxStoredBlock = 65535;  // deflate stored-block LEN is 16 bits

std::array<uint32_t, 256> make_crc32_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

void put_be32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

void put_le16(std::string& out, uint32_t value) {
  out.push_back(static_cast<char>(value & 0xFF));
  out.push_back(static_cast<char>((value >> 8) & 0xFF));
}

// length, type, data, CRC-32 over type and data.
void put_chunk(std::string& out, const char (&type)[5], const std::string& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const std::size_t crc_start = out.size();
  out.append(type, 4);
  out += data;
  put_be32(out, png_crc32(out.data() + crc_start, out.size() - crc_start));
}

// RFC 1950 zlib stream of RFC 1951 stored blocks.
std::string zlib_stored(const std::string& raw) {
  std::string out;
  out.reserve(raw.size() + raw.size() / kMaxStoredBlock * 5 + 16);
  out.push_back(0x78);  // CMF: deflate, 32 KiB window
  out.push_back(0x01);  // FLG: no dictionary, fastest; (0x78 << 8 | 0x01) % 31 == 0
  std::size_t pos = 0;
  do {
    const std::size_t len = std::min(kMaxStoredBlock, raw.size() - pos);
    const bool final = pos + len == raw.size();
    out.push_back(final ? 0x01 : 0x00);  // BFINAL, BTYPE = 00, padded to the byte boundary
    put_le16(out, static_cast<uint32_t>(len));
    put_le16(out, static_cast<uint32_t>(~len & 0xFFFF));
    out.append(raw, pos, len);
    pos += len;
  } while (pos < raw.size());
  put_be32(out, adler32(raw.data(), raw.size()));
  return out;
}

uint8_t color_type(int64_t channels) {
  switch (channels) {
    case 1:
      return 0;  // grayscale
    case 2:
      return 4;  // grayscale + alpha
    case 3:
      return 2;  // truecolor
    case 4:
      return 6;  // truecolor + alpha
  }
  throw std::invalid_argument(
      c10::str("encode_png: image has ", channels, " channels, expected 1, 2, 3 or 4"));
}

}  // namespace

uint32_t png_crc32(const void* data, std::size_t size) {
  static const std::array<uint32_t, 256> table = make_crc32_table();
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = table[(c ^ bytes[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t adler32(const void* data, std::size_t size) {
  constexpr uint32_t kMod = 65521;
  constexpr std::size_t kRun = 5552;  // largest run whose sums cannot overflow 32 bits
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t a = 1, b = 0;
  while (size > 0) {
    const std::size_t n = std::min(size, kRun);
    for (std::size_t i = 0; i < n; ++i) {
      a += bytes[i];
      b += a;
    }
    a %= kMod;
    b %= kMod;
    bytes += n;
    size -= n;
  }
  return (b << 16) | a;
}

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

  // Scanlines: filter type byte 0 (None), then the row's bytes.
  const auto row_bytes = static_cast<std::size_t>(width * channels);
  std::string scanlines;
  scanlines.reserve(static_cast<std::size_t>(height) * (row_bytes + 1));
  const auto* data = reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>());
  for (int64_t y = 0; y < height; ++y) {
    scanlines.push_back('\0');
    scanlines.append(data + static_cast<std::size_t>(y) * row_bytes, row_bytes);
  }

  std::string header;
  put_be32(header, static_cast<uint32_t>(width));
  put_be32(header, static_cast<uint32_t>(height));
  header += {8, static_cast<char>(type), 0, 0, 0};  // bit depth, colour type, deflate,
                                                    // adaptive filtering, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", zlib_stored(scanlines));
  put_chunk(png, "IEND", "");
  return png;
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
