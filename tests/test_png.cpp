// Tests for the zlib-free PNG encoder and make_grid. Without a decoder in C++, the PNG tests
// check the structure a decoder relies on: signature, IHDR, chunk CRCs, the zlib header, stored
// blocks that reassemble to the filtered scanlines, and the Adler-32 trailer.
#include <gtest/gtest.h>

#include "test_support.h"
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "microdit/io/png.h"

namespace microdit::io {
namespace {

namespace fs = std::filesystem;

uint32_t be32(const std::string& s, std::size_t pos) {
  uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(s[pos + i]);
  return v;
}

uint32_t le16(const std::string& s, std::size_t pos) {
  return static_cast<uint8_t>(s[pos]) | static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 1]))
                                            << 8;
}

// Adler-32 the slow way, as RFC 1950 defines it (reduction after every byte).
uint32_t adler32_reference(const std::string& data) {
  uint32_t a = 1, b = 0;
  for (char c : data) {
    a = (a + static_cast<uint8_t>(c)) % 65521;
    b = (b + a) % 65521;
  }
  return b << 16 | a;
}

struct Chunk {
  std::string type, data;
};

// Splits a PNG into chunks, checking the signature and every chunk CRC.
std::vector<Chunk> parse_chunks(const std::string& png) {
  std::vector<Chunk> chunks;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::size_t pos = 8;
  while (pos < png.size()) {
    const uint32_t length = be32(png, pos);
    Chunk chunk{png.substr(pos + 4, 4), png.substr(pos + 8, length)};
    EXPECT_EQ(be32(png, pos + 8 + length), png_crc32(png.data() + pos + 4, length + 4))
        << "CRC of chunk " << chunk.type;
    chunks.push_back(std::move(chunk));
    pos += 12 + length;
  }
  EXPECT_EQ(pos, png.size());
  return chunks;
}

// Reassembles a zlib stream made of stored blocks, checking header, block framing and Adler-32.
std::string inflate_stored(const std::string& z, int* blocks) {
  EXPECT_EQ(static_cast<uint8_t>(z[0]) & 0x0F, 8) << "compression method deflate";
  EXPECT_EQ((static_cast<uint8_t>(z[0]) << 8 | static_cast<uint8_t>(z[1])) % 31, 0);
  EXPECT_EQ(static_cast<uint8_t>(z[1]) & 0x20, 0) << "no preset dictionary";
  std::string out;
  std::size_t pos = 2;
  *blocks = 0;
  for (bool final = false; !final;) {
    const auto header = static_cast<uint8_t>(z.at(pos));
    final = header & 1;
    EXPECT_EQ(header >> 1, 0) << "BTYPE 00 (stored)";
    const uint32_t len = le16(z, pos + 1), nlen = le16(z, pos + 3);
    EXPECT_EQ(len ^ 0xFFFF, nlen);
    out += z.substr(pos + 5, len);
    pos += 5 + len;
    ++*blocks;
  }
  EXPECT_EQ(pos + 4, z.size()) << "Adler-32 trailer ends the stream";
  EXPECT_EQ(be32(z, pos), adler32_reference(out));
  return out;
}

// Filter type 0 before each row of the (H, W, C) bytes.
std::string filtered_scanlines(const at::Tensor& image) {
  const auto c = image.contiguous();
  const auto row = static_cast<std::size_t>(c.size(1) * c.size(2));
  const auto* data = reinterpret_cast<const char*>(c.data_ptr<uint8_t>());
  std::string out;
  for (int64_t y = 0; y < c.size(0); ++y) {
    out.push_back('\0');
    out.append(data + y * row, row);
  }
  return out;
}

at::Tensor random_image(int64_t h, int64_t w, int64_t c) {
  return at::randint(0, 256, {h, w, c}, at::kByte);
}

// Checks everything for one image; returns the number of stored blocks.
int check_png(const at::Tensor& image, uint8_t expected_color_type) {
  const auto chunks = parse_chunks(encode_png(image));
  EXPECT_EQ(chunks.size(), 3u);
  if (chunks.size() != 3u) return 0;
  EXPECT_EQ(chunks[0].type, "IHDR");
  EXPECT_EQ(chunks[1].type, "IDAT");
  EXPECT_EQ(chunks[2].type, "IEND");
  const std::string& ihdr = chunks[0].data;
  EXPECT_EQ(ihdr.size(), 13u);
  EXPECT_EQ(be32(ihdr, 0), image.size(1));  // width
  EXPECT_EQ(be32(ihdr, 4), image.size(0));  // height
  EXPECT_EQ(ihdr.substr(8), std::string({8, static_cast<char>(expected_color_type), 0, 0, 0}));
  EXPECT_TRUE(chunks[2].data.empty());
  int blocks = 0;
  EXPECT_EQ(inflate_stored(chunks[1].data, &blocks), filtered_scanlines(image));
  return blocks;
}

TEST(Png, ChecksumsMatchTheirStandardCheckValues) {
  EXPECT_EQ(png_crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(png_crc32("IEND", 4), 0xAE426082u);  // every PNG's last four bytes
  EXPECT_EQ(adler32("Wikipedia", 9), 0x11E60398u);
  EXPECT_EQ(adler32("", 0), 1u);
  const std::string large(100000, '\xff');  // long runs exercise the deferred modulo
  EXPECT_EQ(adler32(large.data(), large.size()), adler32_reference(large));
}

TEST(Png, RgbImageHasValidStructure) { EXPECT_EQ(check_png(random_image(5, 7, 3), 2), 1); }

TEST(Png, EveryChannelCountMapsToItsColourType) {
  EXPECT_EQ(check_png(random_image(3, 4, 1), 0), 1);
  EXPECT_EQ(check_png(random_image(3, 4, 2), 4), 1);
  EXPECT_EQ(check_png(random_image(3, 4, 4), 6), 1);
}

TEST(Png, LargeImageSpansSeveralStoredBlocks) {
  // 150 rows of 1 + 200 * 3 bytes = 90150 bytes: one full 65535-byte block and one more.
  EXPECT_EQ(check_png(random_image(150, 200, 3), 2), 2);
  // Exactly 65535 bytes of scanlines: 255 rows of 1 + 256 bytes fit one block.
  EXPECT_EQ(check_png(random_image(255, 256, 1), 0), 1);
  EXPECT_EQ(check_png(random_image(256, 256, 1), 0), 2);
}

TEST(Png, NonContiguousInputIsEncodedInLogicalOrder) {
  const auto chw = at::randint(0, 256, {3, 6, 5}, at::kByte);
  const auto hwc = chw.permute({1, 2, 0});  // a view, not contiguous
  EXPECT_EQ(encode_png(hwc), encode_png(hwc.contiguous()));
  check_png(hwc, 2);
}

TEST(Png, RejectsWrongTypesAndShapes) {
  EXPECT_THROW(encode_png(at::zeros({4, 4, 3})), std::invalid_argument);             // float
  EXPECT_THROW(encode_png(at::zeros({4, 4, 5}, at::kByte)), std::invalid_argument);  // 5 channels
  EXPECT_THROW(encode_png(at::zeros({4, 4}, at::kByte)), std::invalid_argument);     // 2-D
  EXPECT_THROW(encode_png(at::zeros({0, 4, 3}, at::kByte)), std::invalid_argument);  // empty
}

TEST(Png, WritePngWritesTheEncodedBytes) {
  const fs::path dir = fs::temp_directory_path() / ("microdit-png-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto image = random_image(9, 11, 4);
  write_png(dir / "grid.png", image);
  std::ifstream in(dir / "grid.png", std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(bytes, encode_png(image));
  test::remove_tree(dir);
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
  check_png(grid, 2);
}

TEST(MakeGrid, RejectsBadArguments) {
  EXPECT_THROW(make_grid(at::zeros({2, 3, 4}), 2), std::invalid_argument);
  EXPECT_THROW(make_grid(at::zeros({2, 3, 4, 4}, at::kByte), 2), std::invalid_argument);
  EXPECT_THROW(make_grid(at::zeros({2, 3, 4, 4}), 0), std::invalid_argument);
}

}  // namespace
}  // namespace microdit::io
