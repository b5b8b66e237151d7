// Image decoding with Pillow's results. The PNG sample mapping follows Pillow's PngImagePlugin
// (_MODES: 16-bit gray opens as I;16, 16-bit color types as 8-bit modes through the ;16B
// unpackers, which keep the high byte) and Convert.c (I;16 -> RGB clips at 255). The built-in PNG
// decoder follows the PNG specification (W3C, 3rd edition): chunks (5), filters (7.3, 9),
// bit depths and color types (6.1).
#include "microdit/image/decode.h"

#include "microdit/io/read_file.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#ifdef MICRODIT_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef MICRODIT_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include "microdit/io/png.h"

namespace microdit::image {

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& why) {
  throw std::runtime_error(name + ": cannot be decoded: " + why);
}

// ---------------------------------------------------------------------------- PNG header

constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

#if defined(MICRODIT_HAVE_OPENCV) || defined(MICRODIT_HAVE_ZLIB)
uint32_t be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} << 24 | uint32_t{u[1]} << 16 | uint32_t{u[2]} << 8 | uint32_t{u[3]};
}

struct PngHeader {
  int64_t width = 0, height = 0;
  int depth = 0, color_type = 0;
  bool interlaced = false;
};

bool valid_depth(int color_type, int depth) {
  switch (color_type) {
    case 0:
      return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3:
      return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case 2:
    case 4:
    case 6:
      return depth == 8 || depth == 16;
    default:
      return false;
  }
}

// IHDR is the first chunk: signature (8), length 13 (4), "IHDR" (4), 13 bytes of data, CRC.
PngHeader parse_ihdr(std::string_view bytes, const std::string& name) {
  if (bytes.size() < 33 || bytes.substr(0, 8) != kPngSignature || be32(bytes.data() + 8) != 13 ||
      bytes.substr(12, 4) != "IHDR") {
    fail(name, "PNG data without an IHDR chunk");
  }
  const char* d = bytes.data() + 16;
  const auto byte = [&](int i) { return static_cast<int>(static_cast<unsigned char>(d[i])); };
  PngHeader h{be32(d), be32(d + 4), byte(8), byte(9), byte(12) == 1};
  if (h.width == 0 || h.height == 0 || h.width > INT32_MAX || h.height > INT32_MAX ||
      !valid_depth(h.color_type, h.depth) || byte(10) != 0 || byte(11) != 0 || byte(12) > 1) {
    fail(name, "invalid PNG header");
  }
  return h;
}
#endif

#ifdef MICRODIT_HAVE_ZLIB
// ---------------------------------------------------------------------- built-in PNG decoder

// Pillow refuses images of more than 2 * Image.MAX_IMAGE_PIXELS (DecompressionBombError); the
// same bound keeps a forged header from allocating gigabytes here.
constexpr int64_t kMaxPixels = 2 * 89'478'485;

int png_channels(int color_type) {
  switch (color_type) {
    case 2:
      return 3;  // RGB
    case 4:
      return 2;  // gray + alpha
    case 6:
      return 4;  // RGBA
    default:
      return 1;  // gray (0) or palette index (3)
  }
}

struct PngData {
  PngHeader header;
  std::string_view palette;  // PLTE: RGB triples
  std::string idat;          // every IDAT chunk's data, concatenated: one zlib stream
};

// Walks the chunks to IEND (a missing IEND is accepted, as Pillow does). Critical chunks must
// have a correct CRC; ancillary ones (tRNS, gAMA, text, ...) are skipped unread, as Pillow's
// convert('RGB') ignores them.
PngData read_png_chunks(std::string_view bytes, const std::string& name) {
  PngData png{parse_ihdr(bytes, name), {}, {}};
  for (std::size_t pos = kPngSignature.size(); pos < bytes.size();) {
    if (bytes.size() - pos < 12 || be32(bytes.data() + pos) > bytes.size() - pos - 12) {
      fail(name, "truncated PNG");
    }
    const uint32_t length = be32(bytes.data() + pos);
    const std::string type(bytes.substr(pos + 4, 4));
    const std::string_view data = bytes.substr(pos + 8, length);
    const bool critical = type[0] >= 'A' && type[0] <= 'Z';
    if (critical && io::png_crc32(bytes.data() + pos + 4, length + 4) !=
                        be32(bytes.data() + pos + 8 + length)) {
      fail(name, "CRC error in PNG chunk " + type);
    }
    if (type == "IEND") break;
    if (type == "IDAT") png.idat.append(data);
    if (type == "PLTE") png.palette = data;
    if (critical && type != "IHDR" && type != "IDAT" && type != "PLTE") {
      fail(name, "unknown critical PNG chunk " + type);
    }
    pos += 12 + length;
  }
  if (png.idat.empty()) fail(name, "PNG without image data");
  if (png.header.color_type == 3 && png.palette.empty()) fail(name, "palette PNG without PLTE");
  return png;
}

// Inflates exactly `size` bytes; data after them is ignored (libpng only warns about it).
std::string inflate_exactly(const std::string& compressed, std::size_t size,
                            const std::string& name) {
  if (compressed.size() > UINT_MAX || size > UINT_MAX) fail(name, "PNG too large");
  std::string out(size, '\0');
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) fail(name, "zlib initialisation failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(size);
  const int rc = inflate(&zs, Z_FINISH);
  const std::string message = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) fail(name, "corrupt PNG image data: " + message);
  if (zs.avail_out != 0) fail(name, "truncated PNG image data");
  return out;
}

uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return static_cast<uint8_t>(pa <= pb && pa <= pc ? a : (pb <= pc ? b : c));
}

// Undoes the per-scanline filters in place. Each of the `rows` lines is a filter-type byte and
// `row_bytes` bytes; `bpp` is the byte distance to the corresponding byte of the pixel on the left.
void unfilter(uint8_t* raw, int64_t rows, std::size_t row_bytes, std::size_t bpp,
              const std::string& name) {
  const std::vector<uint8_t> zeros(row_bytes, 0);
  const uint8_t* prior = zeros.data();
  for (int64_t y = 0; y < rows; ++y) {
    uint8_t* line = raw + y * (row_bytes + 1);
    uint8_t* cur = line + 1;
    const auto left = [&](std::size_t i) { return i >= bpp ? cur[i - bpp] : 0; };
    const auto upper_left = [&](std::size_t i) { return i >= bpp ? prior[i - bpp] : 0; };
    for (std::size_t i = 0; i < row_bytes; ++i) {
      switch (line[0]) {
        case 0:
          break;
        case 1:
          cur[i] += left(i);
          break;
        case 2:
          cur[i] += prior[i];
          break;
        case 3:
          cur[i] += static_cast<uint8_t>((left(i) + prior[i]) / 2);
          break;
        case 4:
          cur[i] += paeth(left(i), prior[i], upper_left(i));
          break;
        default:
          fail(name, "bad PNG filter type " + std::to_string(line[0]));
      }
    }
    prior = cur;
  }
}

// Sample `index` of a scanline: packed MSB first below 8 bits, big-endian at 16.
uint16_t sample(const uint8_t* row, int64_t index, int depth) {
  if (depth == 8) return row[index];
  if (depth == 16) return static_cast<uint16_t>(row[2 * index] << 8 | row[2 * index + 1]);
  const int64_t bit = index * depth;
  return (row[bit / 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1);
}

// A gray or color sample as Pillow's mode for the PNG maps it to 8 bits.
uint8_t to_8bit(uint16_t value, int depth, int color_type) {
  switch (depth) {
    case 1:
      return value * 255;
    case 2:
      return value * 85;
    case 4:
      return value * 17;
    case 16:
      return color_type == 0 ? std::min<uint16_t>(value, 255) : value >> 8;
    default:
      return static_cast<uint8_t>(value);
  }
}

at::Tensor scanlines_to_rgb(const uint8_t* raw, std::size_t row_bytes, const PngData& png) {
  const PngHeader& h = png.header;
  const int channels = png_channels(h.color_type);
  at::Tensor out = at::empty({h.height, h.width, 3}, at::kByte);
  uint8_t* o = out.data_ptr<uint8_t>();
  const auto* palette = reinterpret_cast<const uint8_t*>(png.palette.data());
  for (int64_t y = 0; y < h.height; ++y) {
    const uint8_t* row = raw + y * (row_bytes + 1) + 1;
    for (int64_t x = 0; x < h.width; ++x, o += 3) {
      if (h.color_type == 3) {  // indices past the palette are black, as in Pillow and libpng
        const std::size_t index = sample(row, x, h.depth);
        const bool known = 3 * index + 2 < png.palette.size();
        for (int c = 0; c < 3; ++c) o[c] = known ? palette[3 * index + c] : 0;
      } else {
        for (int c = 0; c < 3; ++c) {  // alpha is dropped; gray (color types 0, 4) replicated
          const int64_t s = x * channels + (channels >= 3 ? c : 0);
          o[c] = to_8bit(sample(row, s, h.depth), h.depth, h.color_type);
        }
      }
    }
  }
  return out;
}
#endif  // MICRODIT_HAVE_ZLIB

#ifdef MICRODIT_HAVE_OPENCV
// ------------------------------------------------------------------------------- OpenCV

// libjpeg only warns about a JPEG cut short and fills the rest with grey, where Pillow raises
// "image file is truncated". Walks the markers (ITU T.81 B.1.1) to EOI: segments are skipped by
// their length (EXIF thumbnails and their own EOI included), entropy-coded data byte by byte.
bool jpeg_is_complete(std::string_view b) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(b[i]); };
  for (std::size_t i = 2; i + 1 < b.size();) {
    const unsigned marker = at(i + 1);
    if (at(i) != 0xFF || marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      i += at(i) == 0xFF ? 2 : 1;  // entropy-coded data, stuffed 0xFF00, TEM, RSTn
    } else if (marker == 0xFF) {
      i += 1;  // fill byte
    } else if (marker == 0xD9) {
      return true;  // EOI
    } else {
      if (i + 3 >= b.size()) return false;
      i += 2 + (std::size_t{at(i + 2)} << 8 | at(i + 3));  // marker segment
    }
  }
  return false;
}

// 16-bit PNG samples to 8 bits as Pillow maps them (see to_8bit): clipped for gray, high byte
// for the color types.
cv::Mat reduce_16bit(const cv::Mat& image, bool clip) {
  cv::Mat out(image.size(), CV_8UC(image.channels()));
  const int values = image.cols * image.channels();
  for (int y = 0; y < image.rows; ++y) {
    const auto* in = image.ptr<uint16_t>(y);
    auto* o = out.ptr<uint8_t>(y);
    for (int i = 0; i < values; ++i) {
      o[i] = static_cast<uint8_t>(clip ? std::min<uint16_t>(in[i], 255) : in[i] >> 8);
    }
  }
  return out;
}

cv::Mat opencv_imdecode(std::string_view bytes, int flags, const std::string& name) {
  if (bytes.size() > INT_MAX) fail(name, "image data over 2 GiB");
  const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  try {
    return cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    fail(name, e.what());
  }
}

at::Tensor opencv_decode_rgb(std::string_view bytes, ImageFormat format, const std::string& name) {
  if (format == ImageFormat::jpeg && !jpeg_is_complete(bytes)) {
    fail(name, "truncated JPEG (no end-of-image marker)");
  }
  // PNG: IMREAD_UNCHANGED keeps 16-bit samples for Pillow's reduction (and, like Pillow, ignores
  // EXIF orientation). Other formats: 8-bit BGR, orientation ignored as Pillow does.
  const bool png = format == ImageFormat::png;
  const int flags = png ? cv::IMREAD_UNCHANGED : cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION;
  cv::Mat image = opencv_imdecode(bytes, flags, name);
  if (image.empty()) {
    fail(name, std::string("OpenCV " CV_VERSION " cannot read this ") + image_format_name(format) +
                   " data (corrupt or unsupported)");
  }
  if (image.depth() == CV_16U) image = reduce_16bit(image, parse_ihdr(bytes, name).color_type == 0);
  if (image.depth() != CV_8U || image.channels() == 2 || image.channels() > 4) {
    fail(name, "unsupported pixel type " + cv::typeToString(image.type()));
  }
  const int codes[] = {0, cv::COLOR_GRAY2RGB, 0, cv::COLOR_BGR2RGB, cv::COLOR_BGRA2RGB};
  cv::Mat rgb;
  cv::cvtColor(image, rgb, codes[image.channels()]);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).clone();
}
#endif  // MICRODIT_HAVE_OPENCV

}  // namespace

ImageFormat detect_image_format(std::string_view bytes) {
  if (bytes.starts_with(kPngSignature)) return ImageFormat::png;
  if (bytes.starts_with("\xFF\xD8\xFF")) return ImageFormat::jpeg;
  if (bytes.size() >= 12 && bytes.starts_with("RIFF") && bytes.substr(8, 4) == "WEBP") {
    return ImageFormat::webp;
  }
  if (bytes.starts_with("GIF87a") || bytes.starts_with("GIF89a")) return ImageFormat::gif;
  if (bytes.starts_with("BM")) return ImageFormat::bmp;
  if (bytes.starts_with(std::string_view("II*\0", 4)) ||
      bytes.starts_with(std::string_view("MM\0*", 4))) {
    return ImageFormat::tiff;
  }
  return ImageFormat::unknown;
}

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::png:
      return "PNG";
    case ImageFormat::jpeg:
      return "JPEG";
    case ImageFormat::webp:
      return "WebP";
    case ImageFormat::gif:
      return "GIF";
    case ImageFormat::bmp:
      return "BMP";
    case ImageFormat::tiff:
      return "TIFF";
    case ImageFormat::unknown:
      break;
  }
  return "unrecognised";
}

at::Tensor decode_png_rgb(std::string_view bytes, const std::string& name_for_errors) {
#ifdef MICRODIT_HAVE_ZLIB
  const PngData png = read_png_chunks(bytes, name_for_errors);
  const PngHeader& h = png.header;
  if (h.interlaced) fail(name_for_errors, "interlaced PNG needs OpenCV (Adam7 is not built in)");
  if (h.width * h.height > kMaxPixels) {
    fail(name_for_errors, std::to_string(h.width) + "x" + std::to_string(h.height) +
                              " pixels is over Pillow's decompression bomb limit");
  }
  const int bits = png_channels(h.color_type) * h.depth;
  const std::size_t row_bytes = (static_cast<std::size_t>(h.width) * bits + 7) / 8;
  std::string raw = inflate_exactly(png.idat, h.height * (row_bytes + 1), name_for_errors);
  auto* data = reinterpret_cast<uint8_t*>(raw.data());
  unfilter(data, h.height, row_bytes, std::max(1, bits / 8), name_for_errors);
  return scanlines_to_rgb(data, row_bytes, png);
#else
  throw std::runtime_error(name_for_errors +
                           ": cannot decode PNG images: this build has neither OpenCV nor zlib");
#endif
}

at::Tensor decode_image_rgb(std::string_view bytes, const std::string& name_for_errors) {
  const ImageFormat format = detect_image_format(bytes);
#ifdef MICRODIT_HAVE_OPENCV
  return opencv_decode_rgb(bytes, format, name_for_errors);  // also tries unrecognised formats
#else
  if (format == ImageFormat::png) return decode_png_rgb(bytes, name_for_errors);
  if (format == ImageFormat::unknown) {
    fail(name_for_errors, "not a PNG, JPEG, WebP, GIF, BMP or TIFF image");
  }
  throw std::runtime_error(name_for_errors + ": cannot decode " + image_format_name(format) +
                           " images: this build has no OpenCV (only PNG)");
#endif
}

at::Tensor read_image_rgb(const std::filesystem::path& path) {
  return decode_image_rgb(io::read_file(path), path.string());
}

}  // namespace microdit::image
