// Tests for the PNG encoder (libspng) and make_grid. What we write is read back by Pillow, the
// independent decoder the official pipeline uses.
#include <gtest/gtest.h>

#include "test_support.h"

#include <cstdlib>
#include <stdexcept>

#include "microdit/image/decode.h"
#include "microdit/io/png.h"

namespace microdit::io {
namespace {

namespace fs = std::filesystem;

// Reads a PNG with Pillow: "<mode> <width> <height>" and Image.tobytes() (row-major, channels
// interleaved, so the bytes of an (H, W, C) uint8 tensor).
constexpr char kPillowRead[] = R"(import sys
from PIL import Image
with Image.open(sys.argv[1]) as im:
    pixels = im.tobytes()
    header = f"{im.format} {im.mode} {im.width} {im.height}\n"
with open(sys.argv[2], "wb") as out:
    out.write(header.encode() + pixels)
)";

struct PillowImage {
  std::string header;  // "PNG <mode> <width> <height>"
  std::string pixels;
};

PillowImage read_with_pillow(const fs::path& png, const fs::path& dir) {
  test::write_bytes(dir / "read.py", kPillowRead);
  const fs::path out = dir / "pillow.bin", log = dir / "pillow.log";
  const std::string command = "python3 " + (dir / "read.py").string() + " " + png.string() + " " +
                              out.string() + " > " + log.string() + " 2>&1";
  if (std::system(command.c_str()) != 0) {
    ADD_FAILURE() << "Pillow could not read " << png << ": " << test::read_bytes(log);
    return {};
  }
  const std::string bytes = test::read_bytes(out);
  const std::size_t newline = bytes.find('\n');
  return {bytes.substr(0, newline), bytes.substr(newline + 1)};
}

// A deterministic (N, C, H, W) batch in [0, 1]: gradients that differ per image and channel.
at::Tensor test_batch(int64_t n, int64_t c, int64_t h, int64_t w) {
  const auto values = at::arange(n * c * h * w, at::kFloat).reshape({n, c, h, w});
  return (values * 0.37).sin().mul(0.5).add(0.5);
}

TEST(Png, GridsReadBackByPillowEqualTheTensor) {
  test::TempDir dir("png");
  const std::vector<std::string> modes = {"", "L", "LA", "RGB", "RGBA"};
  for (int64_t channels : {1, 2, 3, 4}) {
    const at::Tensor grid = make_grid(test_batch(5, channels, 9, 7), /*columns=*/3);
    const fs::path path = dir.path / ("grid" + std::to_string(channels) + ".png");
    write_png(path, grid);
    const PillowImage read = read_with_pillow(path, dir.path);
    EXPECT_EQ(read.header, "PNG " + modes[channels] + " " + std::to_string(grid.size(1)) + " " +
                               std::to_string(grid.size(0)));
    const std::string expected(reinterpret_cast<const char*>(grid.data_ptr<uint8_t>()),
                               grid.numel());
    EXPECT_TRUE(read.pixels == expected) << channels << " channels";
  }
}

// The first IDAT's zlib header (RFC 1950): FLEVEL 2 is what zlib writes for level 6 exactly.
TEST(Png, OutputIsDeflatedAtLevelSix) {
  const at::Tensor flat = at::full({512, 512, 3}, 200, at::kByte);
  const std::string png = encode_png(flat);
  EXPECT_LT(png.size(), flat.numel() / 100) << "a flat image compresses to almost nothing";
  const std::size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  EXPECT_EQ(static_cast<uint8_t>(png[idat + 4]), 0x78) << "deflate, 32 KiB window";
  EXPECT_EQ(static_cast<uint8_t>(png[idat + 5]) >> 6, 2) << "FLEVEL of compression level 6";
  // Noise cannot be compressed, but stays readable and exact.
  const at::Tensor noise = at::randint(0, 256, {64, 48, 4}, at::kByte);
  EXPECT_TRUE(image::decode_png_rgb(encode_png(noise), "noise.png").equal(noise.narrow(2, 0, 3)));
}

TEST(Png, NonContiguousInputIsEncodedInLogicalOrder) {
  const auto chw = at::randint(0, 256, {3, 6, 5}, at::kByte);
  const auto hwc = chw.permute({1, 2, 0});  // a view, not contiguous
  EXPECT_EQ(encode_png(hwc), encode_png(hwc.contiguous()));
  EXPECT_TRUE(image::decode_png_rgb(encode_png(hwc), "view.png").equal(hwc));
}

TEST(Png, RejectsWrongTypesAndShapes) {
  EXPECT_THROW(encode_png(at::zeros({4, 4, 3})), std::invalid_argument);             // float
  EXPECT_THROW(encode_png(at::zeros({4, 4, 5}, at::kByte)), std::invalid_argument);  // 5 channels
  EXPECT_THROW(encode_png(at::zeros({4, 4}, at::kByte)), std::invalid_argument);     // 2-D
  EXPECT_THROW(encode_png(at::zeros({0, 4, 3}, at::kByte)), std::invalid_argument);  // empty
}

TEST(Png, WritePngWritesTheEncodedBytes) {
  test::TempDir dir("png");
  const auto image = at::randint(0, 256, {9, 11, 4}, at::kByte);
  write_png(dir.path / "grid.png", image);
  EXPECT_EQ(test::read_bytes(dir.path / "grid.png"), encode_png(image));
}

TEST(MakeGrid, LaysOutTilesWithPaddingLikeTorchvision) {
  // Three 1-channel 2x2 tiles of constant value, two columns, padding 1.
  const auto images = at::stack({at::full({1, 2, 2}, 0.2), at::full({1, 2, 2}, 0.5),
                                 at::full({1, 2, 2}, 1.0)});  // (N, C, H, W)
  const auto grid = make_grid(images, /*columns=*/2, /*padding=*/1);
  ASSERT_EQ(grid.scalar_type(), at::kByte);
  ASSERT_EQ(grid.sizes(), at::IntArrayRef({7, 7, 1}));  // rows: 2 * (2 + 1) + 1
  auto expected = at::zeros({7, 7, 1}, at::kByte);
  expected.narrow(0, 1, 2).narrow(1, 1, 2).fill_(51);   // 0.2 * 255 + 0.5 = 51.5 -> 51
  expected.narrow(0, 1, 2).narrow(1, 4, 2).fill_(128);  // 0.5 * 255 + 0.5 = 128
  expected.narrow(0, 4, 2).narrow(1, 1, 2).fill_(255);
  EXPECT_TRUE(at::equal(grid, expected)) << grid.squeeze(-1);
}

TEST(MakeGrid, FewerImagesThanColumnsUseOneRowAndValuesAreClamped) {
  const auto images = at::stack({at::full({3, 4, 5}, -1.0), at::full({3, 4, 5}, 2.0)});
  const auto grid = make_grid(images, /*columns=*/8);
  ASSERT_EQ(grid.sizes(), at::IntArrayRef({4 + 4, 2 * 7 + 2, 3}));
  EXPECT_EQ(grid[2][2][0].item<uint8_t>(), 0);
  EXPECT_EQ(grid[2][9][1].item<uint8_t>(), 255);
  EXPECT_EQ(grid[0][9][1].item<uint8_t>(), 0);  // padding
  EXPECT_TRUE(image::decode_png_rgb(encode_png(grid), "grid.png").equal(grid));
}

TEST(MakeGrid, RejectsBadArguments) {
  EXPECT_THROW(make_grid(at::zeros({2, 3, 4}), 2), std::invalid_argument);
  EXPECT_THROW(make_grid(at::zeros({2, 3, 4, 4}, at::kByte), 2), std::invalid_argument);
  EXPECT_THROW(make_grid(at::zeros({2, 3, 4, 4}), 0), std::invalid_argument);
}

}  // namespace
}  // namespace microdit::io
