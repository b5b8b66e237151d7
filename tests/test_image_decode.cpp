// Image decoding against np.asarray(Image.open(f).convert('RGB')) from Pillow
// (scripts/reference/make_decode_reference.py -> tests/data/decode). PNG tests run in every build
// (libspng); JPEG needs libjpeg, BMP OpenCV.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "microdit/image/decode.h"
#include "microdit/io/png.h"
#include "microdit/io/safetensors.h"
#include "test_one_line.h"
#include "test_support.h"

namespace microdit::image {
namespace {

namespace fs = std::filesystem;

const fs::path kData = test::source_dir() / "tests" / "data" / "decode";

#ifdef MICRODIT_HAVE_OPENCV
constexpr bool kHaveOpenCV = true;
#else
constexpr bool kHaveOpenCV = false;
#endif
#ifdef MICRODIT_HAVE_LIBJPEG
constexpr bool kHaveLibjpeg = true;
#else
constexpr bool kHaveLibjpeg = false;
#endif

const io::TensorMap& expected() {
  static const io::TensorMap tensors = io::load_safetensors(kData / "expected.safetensors");
  return tensors;
}

std::vector<std::string> png_fixtures(bool interlaced) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : expected()) {
    if (name.ends_with(".png") && name.starts_with("interlaced") == interlaced) {
      names.push_back(name);
    }
  }
  return names;
}

void expect_decodes_as_pillow(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const at::Tensor got = read_image_rgb(kData / name);
    ASSERT_EQ(got.sizes(), expected().at(name).sizes()) << name;
    EXPECT_TRUE(got.equal(expected().at(name))) << name;
  }
}

// Every color type, bit depth (1 to 16) and filter type, palettes with tRNS.
TEST(DecodeImage, PngMatchesPillowExactly) {
  ASSERT_EQ(png_fixtures(false).size(), 14u);
  expect_decodes_as_pillow(png_fixtures(false));
}

// Adam7 at bit depths 1, 2, 4, 8 and 16, gray, gray+alpha, palette, RGB and RGBA; partial and empty
// passes.
TEST(DecodeImage, InterlacedPngMatchesPillowExactly) {
  ASSERT_EQ(png_fixtures(true).size(), 9u);
  expect_decodes_as_pillow(png_fixtures(true));
}

TEST(DecodeImage, PngDecoderReadsWhatEncodePngWrites) {
  for (int64_t channels : {1, 2, 3, 4}) {
    const at::Tensor image = at::randint(0, 256, {37, 101, channels}, at::kByte);
    const at::Tensor rgb =
        channels <= 2 ? image.narrow(2, 0, 1).expand({37, 101, 3}) : image.narrow(2, 0, 3);
    EXPECT_TRUE(decode_png_rgb(io::encode_png(image), "x.png").equal(rgb)) << channels;
  }
}

// libjpeg set up as Pillow sets it up (Pillow bundles its own libjpeg-turbo; the integer DCT and
// fancy upsampling give the same samples): the same pixels. Gray is replicated; Adobe CMYK is
// read inverted and converted with Pillow's formula; the EXIF orientation is not applied.
TEST(DecodeImage, JpegMatchesPillowExactly) {
  if (!kHaveLibjpeg) GTEST_SKIP() << "JPEG needs libjpeg";
  // Pillow does not apply the EXIF orientation on open: 24x32 stays 24x32.
  expect_decodes_as_pillow(
      {"rgb_q90.jpg", "gray_q90.jpg", "exif_orientation6.jpg", "cmyk_q90.jpg"});
}

TEST(DecodeImage, BmpMatchesPillowExactly) {
  if (!kHaveOpenCV) GTEST_SKIP() << "BMP needs OpenCV";
  EXPECT_TRUE(read_image_rgb(kData / "rgb.bmp").equal(expected().at("rgb.bmp")));
}

TEST(DecodeImage, FormatsWithoutTheirLibraryAreAClearError) {
  if (kHaveOpenCV && kHaveLibjpeg) GTEST_SKIP() << "this build decodes every accepted format";
  std::string decodes = "(it decodes PNG";
  if (kHaveLibjpeg) decodes += ", JPEG";
  if (kHaveOpenCV) decodes += ", WebP, BMP";
  decodes += ")";
  if (!kHaveLibjpeg) {
    EXPECT_TRUE(test::throws_one_line([] { read_image_rgb(kData / "rgb_q90.jpg"); },
                                      (kData / "rgb_q90.jpg").string(),
                                      {"cannot decode JPEG images: this build has no libjpeg",
                                       decodes}));
  }
  if (!kHaveOpenCV) {
    EXPECT_TRUE(test::throws_one_line([] { read_image_rgb(kData / "rgb.bmp"); },
                                      (kData / "rgb.bmp").string(),
                                      {"cannot decode BMP images: this build has no OpenCV",
                                       decodes}));
  }
}

// Formats OpenCV would decode, renamed .png: refused by their first bytes, in one line, whether
// or not the build has OpenCV.
TEST(DecodeImage, OnlyAcceptedFormatsAreDecoded) {
  const std::string tiff("II*\0\x08\0\0\0\0\0", 10), pgm("P5\n1 1\n255\n\x80", 12);
  const std::string hdr = "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x80";
  const std::string gif = "GIF89a\x01\0\x01\0\0\0\0;";
  for (const auto& [bytes, what] : {std::pair{tiff, "TIFF data"}, std::pair{gif, "GIF data"},
                                    std::pair{pgm, "not an image in an accepted format"},
                                    std::pair{hdr, "not an image in an accepted format"}}) {
    EXPECT_TRUE(test::throws_one_line([&] { decode_image_rgb(bytes, "renamed.png"); },
                                      "renamed.png: cannot be decoded: ",
                                      {what, "(accepted, by their first bytes: PNG, JPEG, WebP, BMP)"}));
  }
  EXPECT_FALSE(is_accepted_image_format(ImageFormat::tiff));
  EXPECT_TRUE(is_accepted_image_format(ImageFormat::webp));
}

TEST(DecodeImage, DetectsFormatsByMagicBytes) {
  EXPECT_EQ(detect_image_format(test::read_bytes(kData / "rgb.png")), ImageFormat::png);
  EXPECT_EQ(detect_image_format(test::read_bytes(kData / "rgb_q90.jpg")), ImageFormat::jpeg);
  EXPECT_EQ(detect_image_format(test::read_bytes(kData / "rgb.bmp")), ImageFormat::bmp);
  EXPECT_EQ(detect_image_format(std::string_view("RIFF\x10\0\0\0WEBPVP8 ", 16)), ImageFormat::webp);
  EXPECT_EQ(detect_image_format("GIF89a..."), ImageFormat::gif);
  EXPECT_EQ(detect_image_format(std::string("II*\0", 4)), ImageFormat::tiff);
  EXPECT_EQ(detect_image_format(std::string("MM\0*", 4)), ImageFormat::tiff);
  EXPECT_EQ(detect_image_format("hello"), ImageFormat::unknown);
  EXPECT_EQ(detect_image_format(""), ImageFormat::unknown);
}

TEST(DecodeImage, CorruptPngIsAnErrorNamingTheFile) {
  test::TempDir dir("decode");
  const std::string png = test::read_bytes(kData / "rgb.png");
  std::string flipped = png;
  flipped[png.find("IDAT") + 40] ^= 0x5A;  // the IDAT CRC no longer matches
  const std::map<std::string, std::string> damaged = {
      {"half.png", png.substr(0, png.size() / 2)},
      {"flipped.png", flipped},
      {"header_only.png", png.substr(0, 20)},
  };
  for (const auto& [name, bytes] : damaged) {
    const fs::path path = dir.path / name;
    test::write_bytes(path, bytes);
    EXPECT_TRUE(
        test::throws_with([&] { read_image_rgb(path); }, path.string(), {"cannot be decoded"}))
        << name;
  }
}

// Headers claiming billions of pixels over a few bytes of data: refused before any allocation.
TEST(DecodeImage, PngOverThePixelLimitIsRefused) {
  const fs::path bomb = kData / "bomb_60000x60000.png";
  EXPECT_TRUE(test::throws_with([&] { read_image_rgb(bomb); }, bomb.string(),
                                {"cannot be decoded", "60000x60000 pixels is over Pillow's"}));
  const fs::path wide = kData / "bomb_2147483647x1.png";
  EXPECT_TRUE(test::throws_with([&] { read_image_rgb(wide); }, wide.string(),
                                {"cannot be decoded", "PNG: "}));
}

TEST(DecodeImage, CorruptOrUnknownDataIsAnErrorNamingTheFile) {
  test::TempDir dir("decode");
  const fs::path noise = dir.path / "noise.bin";
  test::write_bytes(noise, "this is not an image at all");
  EXPECT_TRUE(
      test::throws_with([&] { read_image_rgb(noise); }, noise.string(), {"cannot be decoded"}));
  const fs::path missing = dir.path / "missing.png";
  EXPECT_TRUE(
      test::throws_with([&] { read_image_rgb(missing); }, missing.string(), {"cannot open"}));
  if (!kHaveLibjpeg) return;
  // libjpeg only warns about a cut JPEG; Pillow raises "image file is truncated", and so do we.
  const std::string jpeg = test::read_bytes(kData / "rgb_q90.jpg");
  for (std::size_t size : {jpeg.size() / 2, jpeg.size() - 2}) {
    EXPECT_TRUE(test::throws_with([&] { decode_image_rgb(jpeg.substr(0, size), "cut.jpg"); },
                                  "cut.jpg", {"cannot be decoded", "truncated JPEG"}))
        << size;
  }
  // Bytes after the end-of-image marker are accepted, as Pillow accepts them.
  EXPECT_EQ(decode_image_rgb(jpeg + std::string(10, '\0') + "junk", "junk.jpg").sizes(),
            expected().at("rgb_q90.jpg").sizes());
}

// Damaged entropy-coded data (every 53rd byte overwritten, a stray RST marker) that still ends in
// EOI: libjpeg warns ("Corrupt JPEG data: ...", which OpenCV's decoder printed to stderr) and
// decodes on, as Pillow does. Nothing reaches stderr, and the pixels are Pillow's.
TEST(DecodeImage, CorruptJpegScanDecodesAsPillowWithoutWritingToStderr) {
  if (!kHaveLibjpeg) GTEST_SKIP() << "JPEG needs libjpeg";
  const std::string bytes = test::read_bytes(kData / "corrupt_scan.jpg");
  at::Tensor got;
  testing::internal::CaptureStderr();
  try {
    got = decode_image_rgb(bytes, "corrupt_scan.jpg");
  } catch (...) {
    testing::internal::GetCapturedStderr();
    throw;
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ASSERT_EQ(got.sizes(), expected().at("corrupt_scan.jpg").sizes());
  EXPECT_TRUE(got.equal(expected().at("corrupt_scan.jpg")));
}

// Data with a JPEG's first bytes that libjpeg refuses: one line naming the file with libjpeg's
// reason, and nothing on stderr (libjpeg's warning about the garbage included).
TEST(DecodeImage, BadJpegDataIsOneLineNamingTheFile) {
  if (!kHaveLibjpeg) GTEST_SKIP() << "JPEG needs libjpeg";
  const std::string jpeg = test::read_bytes(kData / "rgb_q90.jpg");
  std::string precision12 = jpeg;
  precision12[jpeg.find("\xFF\xC0") + 4] = 12;  // SOF0's sample precision
  using namespace std::string_literals;  // "..."s: the literals hold NUL bytes
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xFF\xD8\xFF\xD9"s, "JPEG datastream contains no image"},
      {"\xFF\xD8\xFF\x00 garbage after the start of image \xFF\xD9"s,
       "JPEG datastream contains no image"},
      {"\xFF\xD8\xFF this is not a JPEG"s, "truncated JPEG (no end-of-image marker)"},
      {precision12, "precision 12"},  // libjpeg's message, or ours where libjpeg reads 12 bits
  };
  for (const auto& [bytes, why] : cases) {
    testing::internal::CaptureStderr();
    EXPECT_TRUE(test::throws_one_line([&] { decode_image_rgb(bytes, "bad.jpg"); },
                                      "bad.jpg: cannot be decoded: ", {why}))
        << why;
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << why;
  }
}

// A header claiming 60000x60000 pixels: refused before libjpeg allocates anything for it.
TEST(DecodeImage, JpegOverThePixelLimitIsRefused) {
  if (!kHaveLibjpeg) GTEST_SKIP() << "JPEG needs libjpeg";
  std::string bomb = test::read_bytes(kData / "rgb_q90.jpg");
  const std::size_t sof = bomb.find("\xFF\xC0");
  bomb.replace(sof + 5, 4, "\xEA\x60\xEA\x60");  // height, width
  EXPECT_TRUE(test::throws_one_line([&] { decode_image_rgb(bomb, "bomb.jpg"); },
                                    "bomb.jpg: cannot be decoded: ",
                                    {"60000x60000 pixels is over Pillow's"}));
}

// OpenCV would allocate what a BMP or WebP header declares (up to 2^30 pixels) before finding the
// data missing (tests/fuzz/crashes/image_decode/bmp_header_declaring_848m_pixels).
TEST(DecodeImage, BmpAndWebpOverThePixelLimitAreRefused) {
  if (!kHaveOpenCV) GTEST_SKIP() << "BMP and WebP need OpenCV";
  std::string bmp = test::read_bytes(kData / "rgb.bmp");
  bmp.replace(18, 8, std::string("\x60\xEA\x00\x00\xA0\x15\xFF\xFF", 8));  // 60000, -60000
  EXPECT_TRUE(test::throws_one_line([&] { decode_image_rgb(bmp, "bomb.bmp"); },
                                    "bomb.bmp: cannot be decoded: ",
                                    {"60000x60000 pixels is over Pillow's"}));
  const std::string riff = std::string("RIFF\x16\x00\x00\x00WEBP", 12);
  const std::vector<std::pair<std::string, std::string>> webps = {
      // extended: 24-bit width - 1 and height - 1 after 4 bytes of flags
      {"16384x16384", riff + std::string("VP8X\x0A\x00\x00\x00\x00\x00\x00\x00"
                                         "\xFF\x3F\x00\xFF\x3F\x00", 18)},
      // lossless: signature 0x2F, then 14 bits each of width - 1 and height - 1
      {"16384x16384", riff + std::string("VP8L\x0A\x00\x00\x00\x2F\xFF\xFF\xFF\x0F"
                                         "\x00\x00\x00\x00\x00", 18)},
  };
  for (const auto& [pixels, webp] : webps) {
    EXPECT_TRUE(test::throws_one_line([&] { decode_image_rgb(webp, "bomb.webp"); },
                                      "bomb.webp: cannot be decoded: ",
                                      {pixels + " pixels is over Pillow's"}));
  }
  // lossy: the frame tag, the start code, then 14-bit width and height
  const std::string vp8 = riff + std::string("VP8 \x0A\x00\x00\x00\x00\x00\x00\x9D\x01\x2A"
                                             "\xFF\x3F\xFF\x3F", 18);
  EXPECT_TRUE(test::throws_one_line([&] { decode_image_rgb(vp8, "lossy.webp"); },
                                    "lossy.webp: cannot be decoded: ",
                                    {"16383x16383 pixels is over Pillow's"}));
}

}  // namespace
}  // namespace microdit::image
