// libjpeg directly for JPEG, not OpenCV: OpenCV's libjpeg error manager prints warnings to stderr.
// Image decoding with Pillow's results. PNG: libspng in every build, to the file's own samples;
// their mapping to 8-bit RGB follows Pillow's PngImagePlugin (_MODES: 16-bit gray opens as I;16,
// 16-bit color types as 8-bit modes through the ;16B unpackers, which keep the high byte) and
// Convert.c (I;16 -> RGB clips at 255). JPEG: libjpeg where the build has it, set up as Pillow's
// JpegDecode.c sets it up. WebP and BMP: OpenCV where the build has it.
#include "microdit/image/decode.h"

#include "microdit/image/resize.h"
#include "microdit/io/read_file.h"

#include <spng.h>

#include <algorithm>
#include <cstdlib>
#include <climits>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <vector>

#ifdef MICRODIT_HAVE_LIBJPEG
#include <jpeglib.h>  // needs <cstdio> first
#endif
#ifdef MICRODIT_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/core/utils/logger.hpp>
#endif

namespace microdit::image {

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& why) {
  throw std::runtime_error(name + ": cannot be decoded: " + why);
}

// --------------------------------------------------------------------------------- PNG

constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);
constexpr const char* kAcceptedFormats = "PNG, JPEG, WebP, BMP";

// Pillow refuses images of more than 2 * Image.MAX_IMAGE_PIXELS (DecompressionBombError); the
// same bound keeps a forged header from allocating gigabytes here.
constexpr int64_t kMaxPixels = 2 * kMaxResizedPixels;
// libspng keeps ancillary chunks (text, ICC profiles, ...) in memory, by default without bound; we
// never use them. At most 64 MiB of them, per chunk and in all, as Pillow's MAX_TEXT_MEMORY.
constexpr std::size_t kMaxChunkBytes = std::size_t{64} << 20;

using SpngContext = std::unique_ptr<spng_ctx, decltype(&spng_ctx_free)>;

void check_pixel_limit(int64_t width, int64_t height, const std::string& name) {
  if (width * height > kMaxPixels) {
    fail(name, std::to_string(width) + "x" + std::to_string(height) +
                   " pixels is over Pillow's decompression bomb limit");
  }
}

// Throws when a libspng call fails, with libspng's description of the problem.
void check_spng(int error, const std::string& name) {
  if (error != 0) fail(name, std::string("PNG: ") + spng_strerror(error));
}

int png_channels(int color_type) {
  switch (color_type) {
    case SPNG_COLOR_TYPE_TRUECOLOR:
      return 3;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA:
      return 2;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA:
      return 4;
    default:
      return 1;  // gray or palette index
  }
}

// Sample `index` of a row as libspng's SPNG_FMT_RAW leaves it: packed MSB first below 8 bits,
// big-endian at 16.
uint16_t sample(const uint8_t* row, int64_t index, int depth) {
  if (depth == 8) return row[index];
  if (depth == 16) return static_cast<uint16_t>(row[2 * index] << 8 | row[2 * index + 1]);
  const int64_t bit = index * depth;
  return (row[bit / 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1);
}

// A gray or color sample as Pillow's mode for the PNG maps it to 8 bits. libspng's own 8-bit
// formats differ: they scale 16-bit gray (Pillow clips it) and cannot give gray without alpha.
uint8_t to_8bit(uint16_t value, int depth, int color_type) {
  switch (depth) {
    case 1:
      return value * 255;
    case 2:
      return value * 85;
    case 4:
      return value * 17;
    case 16:
      return color_type == SPNG_COLOR_TYPE_GRAYSCALE ? std::min<uint16_t>(value, 255) : value >> 8;
    default:
      return static_cast<uint8_t>(value);
  }
}

// Rows of `row_bytes` bytes in the PNG's own sample format -> (H, W, 3) RGB. tRNS is ignored, as
// Pillow's convert('RGB') ignores it.
at::Tensor samples_to_rgb(const uint8_t* raw, std::size_t row_bytes, const spng_ihdr& h,
                          const spng_plte& palette) {
  const int channels = png_channels(h.color_type);
  at::Tensor out = at::empty({h.height, h.width, 3}, at::kByte);
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int64_t y = 0; y < h.height; ++y) {
    const uint8_t* row = raw + y * row_bytes;
    for (int64_t x = 0; x < h.width; ++x, o += 3) {
      if (h.color_type == SPNG_COLOR_TYPE_INDEXED) {  // past the palette is black, as in Pillow
        const std::size_t index = sample(row, x, h.bit_depth);
        const bool known = index < palette.n_entries;
        o[0] = known ? palette.entries[index].red : 0;
        o[1] = known ? palette.entries[index].green : 0;
        o[2] = known ? palette.entries[index].blue : 0;
      } else {
        for (int c = 0; c < 3; ++c) {  // alpha is dropped; gray (color types 0, 4) replicated
          const int64_t s = x * channels + (channels >= 3 ? c : 0);
          o[c] = to_8bit(sample(row, s, h.bit_depth), h.bit_depth, h.color_type);
        }
      }
    }
  }
  return out;
}

#ifdef MICRODIT_HAVE_LIBJPEG
// ------------------------------------------------------------------------------ libjpeg

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

// libjpeg's error manager made quiet, as Pillow's: warnings (damaged scan data, which libjpeg
// decodes through) are counted and dropped; an error keeps libjpeg's one-line message and jumps
// back to jpeg_call, where the default manager would print it and exit the process.
struct JpegErrors {
  jpeg_error_mgr pub;  // first: libjpeg's pointer to it is a pointer to the whole
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_error_exit(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  cinfo->err->format_message(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

void jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) ++cinfo->err->num_warnings;  // trace messages (>= 0) are dropped too
}

void jpeg_output_message(j_common_ptr) {}

// Runs `calls`, libjpeg calls only: where libjpeg reports an error it longjmps back here, past
// them, so no object with a destructor may live in them. False after such an error.
template <class Calls>
bool jpeg_call(JpegErrors& errors, Calls&& calls) {
  if (setjmp(errors.jump) != 0) return false;
  calls();
  return true;
}

// A decompressor with the quiet error manager; freed however decoding ends.
struct JpegDecompressor {
  jpeg_decompress_struct cinfo{};
  JpegErrors errors{};
  JpegDecompressor() {
    cinfo.err = jpeg_std_error(&errors.pub);
    errors.pub.error_exit = jpeg_error_exit;
    errors.pub.emit_message = jpeg_emit_message;
    errors.pub.output_message = jpeg_output_message;
  }
  JpegDecompressor(const JpegDecompressor&) = delete;
  JpegDecompressor& operator=(const JpegDecompressor&) = delete;
  ~JpegDecompressor() { jpeg_destroy_decompress(&cinfo); }
};

// Pillow's CMYK -> RGB (Convert.c cmyk2rgb) of CMYK read inverted (rawmode CMYK;I, Adobe's
// convention, which Pillow assumes for every 4-component JPEG): with c = 255 - stored sample and
// nk = 255 - k = stored k, each channel is nk - c * nk / 255 rounded as MULDIV255.
at::Tensor inverted_cmyk_to_rgb(const at::Tensor& cmyk) {
  at::Tensor out = at::empty({cmyk.size(0), cmyk.size(1), 3}, at::kByte);
  const uint8_t* in = cmyk.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int64_t i = 0, n = cmyk.size(0) * cmyk.size(1); i < n; ++i, in += 4, o += 3) {
    const int nk = in[3];
    for (int c = 0; c < 3; ++c) {
      const int t = (255 - in[c]) * nk + 128;
      o[c] = static_cast<uint8_t>(nk - (((t >> 8) + t) >> 8));
    }
  }
  return out;
}

at::Tensor decode_jpeg_rgb(std::string_view bytes, const std::string& name) {
  if (!jpeg_is_complete(bytes)) fail(name, "truncated JPEG (no end-of-image marker)");
  JpegDecompressor d;
  jpeg_decompress_struct& cinfo = d.cinfo;
  const auto check = [&](bool ok) {
    if (!ok) fail(name, std::string("JPEG: ") + d.errors.message);
  };
  check(jpeg_call(d.errors, [&] {
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    jpeg_read_header(&cinfo, TRUE);
  }));
  // Pillow's JpegImagePlugin: 8-bit samples, 1 (L), 3 (RGB) or 4 (CMYK) components.
  const int components = cinfo.num_components;
  if (cinfo.data_precision != 8) {
    fail(name, "JPEG: data precision " + std::to_string(cinfo.data_precision) +
                   " is not supported (8-bit samples only, as in Pillow)");
  }
  if (components != 1 && components != 3 && components != 4) {
    fail(name, "JPEG: cannot handle " + std::to_string(components) + "-component images");
  }
  check_pixel_limit(cinfo.image_width, cinfo.image_height, name);
  // What Pillow's JpegDecode.c asks for; the DCT (JDCT_ISLOW) and fancy upsampling are
  // libjpeg's defaults, which Pillow keeps outside draft mode.
  cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
  check(jpeg_call(d.errors, [&] { jpeg_start_decompress(&cinfo); }));
  if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
      cinfo.output_components != components) {
    fail(name, "JPEG: unexpected output size");
  }
  at::Tensor samples = at::empty({cinfo.output_height, cinfo.output_width, components}, at::kByte);
  uint8_t* const base = samples.data_ptr<uint8_t>();
  const std::size_t row_bytes = std::size_t{cinfo.output_width} * components;
  check(jpeg_call(d.errors, [&] {
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = base + cinfo.output_scanline * row_bytes;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);  // Pillow's too: reads on to EOI, an error there is one
  }));
  if (components == 3) return samples;
  if (components == 1) return samples.expand({samples.size(0), samples.size(1), 3}).contiguous();
  return inverted_cmyk_to_rgb(samples);
}
#endif  // MICRODIT_HAVE_LIBJPEG

#ifdef MICRODIT_HAVE_OPENCV
// ------------------------------------------------------------------------------- OpenCV

cv::Mat opencv_imdecode(std::string_view bytes, int flags, const std::string& name) {
  if (bytes.size() > INT_MAX) fail(name, "image data over 2 GiB");
  // OpenCV's own warnings about damaged data go to stderr; the exception below says it once.
  static const bool silenced = [] {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    return true;
  }();
  (void)silenced;
  const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  try {
    return cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    fail(name, e.what());
  }
}

uint32_t little_endian(std::string_view b, std::size_t at, int bytes) {
  uint32_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = value << 8 | static_cast<uint8_t>(b[at + i]);
  return value;
}

// The width and height a BMP or WebP header declares, where the file is long enough to hold them:
// OpenCV allocates what the header says, up to 2^30 pixels (OPENCV_IO_MAX_IMAGE_PIXELS, read once
// when the library loads), before it finds the data missing.
std::optional<std::pair<int64_t, int64_t>> declared_size(std::string_view b, ImageFormat format) {
  if (format == ImageFormat::bmp && b.size() >= 26) {
    if (little_endian(b, 14, 4) == 12) {  // BITMAPCOREHEADER: 16-bit width and height
      return std::pair<int64_t, int64_t>{little_endian(b, 18, 2), little_endian(b, 20, 2)};
    }
    // BITMAPINFOHEADER and later: signed 32-bit (a negative height is a top-down image).
    const auto width = static_cast<int32_t>(little_endian(b, 18, 4));
    const auto height = static_cast<int32_t>(little_endian(b, 22, 4));
    return std::pair<int64_t, int64_t>{std::abs(int64_t{width}), std::abs(int64_t{height})};
  }
  if (format == ImageFormat::webp && b.size() >= 30) {
    const std::string_view chunk = b.substr(12, 4);
    if (chunk == "VP8X") {  // extended: 24-bit canvas width - 1 and height - 1
      return std::pair<int64_t, int64_t>{int64_t{little_endian(b, 24, 3)} + 1,
                                         int64_t{little_endian(b, 27, 3)} + 1};
    }
    if (chunk == "VP8L" && static_cast<uint8_t>(b[20]) == 0x2F) {  // lossless: 14-bit fields
      const uint32_t bits = little_endian(b, 21, 4);
      return std::pair<int64_t, int64_t>{(bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1};
    }
    if (chunk == "VP8 ") {  // lossy: 14-bit width and height after the frame tag and start code
      return std::pair<int64_t, int64_t>{little_endian(b, 26, 2) & 0x3FFF,
                                         little_endian(b, 28, 2) & 0x3FFF};
    }
  }
  return std::nullopt;
}

at::Tensor opencv_decode_rgb(std::string_view bytes, ImageFormat format, const std::string& name) {
  if (const auto size = declared_size(bytes, format)) {
    check_pixel_limit(size->first, size->second, name);
  }
  // IMREAD_COLOR: 8-bit BGR whatever the file holds; EXIF orientation ignored as Pillow ignores it.
  const cv::Mat image =
      opencv_imdecode(bytes, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION, name);
  if (image.empty()) {
    fail(name, std::string("OpenCV " CV_VERSION " cannot read this ") + image_format_name(format) +
                   " data (corrupt or unsupported)");
  }
  if (image.type() != CV_8UC3) fail(name, "unexpected pixel type " + cv::typeToString(image.type()));
  cv::Mat rgb;
  cv::cvtColor(image, rgb, cv::COLOR_BGR2RGB);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).clone();
}
#endif  // MICRODIT_HAVE_OPENCV

// A format whose decoder this build lacks, in one line with the formats it does decode.
[[maybe_unused]] [[noreturn]] void not_in_this_build(ImageFormat format, const char* library,
                                                     const std::string& name) {
  std::string decoded = "PNG";
#ifdef MICRODIT_HAVE_LIBJPEG
  decoded += ", JPEG";
#endif
#ifdef MICRODIT_HAVE_OPENCV
  decoded += ", WebP, BMP";
#endif
  throw std::runtime_error(name + ": cannot decode " + image_format_name(format) +
                           " images: this build has no " + library + " (it decodes " + decoded +
                           ")");
}

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
  const std::string& name = name_for_errors;
  const SpngContext ctx(spng_ctx_new(0), &spng_ctx_free);
  if (!ctx) throw std::bad_alloc();
  check_spng(spng_set_image_limits(ctx.get(), kMaxPixels, kMaxPixels), name);
  check_spng(spng_set_chunk_limits(ctx.get(), kMaxChunkBytes, kMaxChunkBytes), name);
  check_spng(spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size()), name);
  spng_ihdr h{};
  check_spng(spng_get_ihdr(ctx.get(), &h), name);
  check_pixel_limit(h.width, h.height, name);
  spng_plte palette{};
  if (h.color_type == SPNG_COLOR_TYPE_INDEXED) check_spng(spng_get_plte(ctx.get(), &palette), name);
  // SPNG_FMT_RAW: the PNG's own samples, deinterlaced, for Pillow's reduction to 8 bits above.
  const std::size_t row_bytes =
      (std::size_t{h.width} * png_channels(h.color_type) * h.bit_depth + 7) / 8;
  std::size_t size = 0;
  check_spng(spng_decoded_image_size(ctx.get(), SPNG_FMT_RAW, &size), name);
  if (size != row_bytes * h.height) fail(name, "PNG: unexpected decoded size");
  std::vector<uint8_t> raw(size);
  check_spng(spng_decode_image(ctx.get(), raw.data(), raw.size(), SPNG_FMT_RAW, 0), name);
  return samples_to_rgb(raw.data(), row_bytes, h, palette);
}

bool is_accepted_image_format(ImageFormat format) {
  return format == ImageFormat::png || format == ImageFormat::jpeg ||
         format == ImageFormat::webp || format == ImageFormat::bmp;
}

at::Tensor decode_image_rgb(std::string_view bytes, const std::string& name_for_errors) {
  // By content, whatever the name: OpenCV would decode any format it knows (TIFF, HDR, PFM,
  // PGM, ...) through decoders no image of ours needs.
  const ImageFormat format = detect_image_format(bytes);
  if (!is_accepted_image_format(format)) {
    fail(name_for_errors, std::string(format == ImageFormat::unknown
                                          ? "not an image in an accepted format"
                                          : image_format_name(format) + std::string(" data")) +
                              " (accepted, by their first bytes: " + kAcceptedFormats + ")");
  }
  if (format == ImageFormat::png) return decode_png_rgb(bytes, name_for_errors);
  if (format == ImageFormat::jpeg) {
#ifdef MICRODIT_HAVE_LIBJPEG
    return decode_jpeg_rgb(bytes, name_for_errors);
#else
    not_in_this_build(format, "libjpeg", name_for_errors);
#endif
  }
#ifdef MICRODIT_HAVE_OPENCV
  return opencv_decode_rgb(bytes, format, name_for_errors);
#else
  not_in_this_build(format, "OpenCV", name_for_errors);
#endif
}

at::Tensor read_image_rgb(const std::filesystem::path& path) {
  return decode_image_rgb(io::read_file(path), path.string());
}

}  // namespace microdit::image
