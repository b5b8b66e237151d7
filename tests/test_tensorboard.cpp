// Tests for the tfevents writer and reader: CRC32C and its mask, record framing, and the
// hand-encoded Event protos (decoded here by a separate minimal protobuf reader).
#include <gtest/gtest.h>

#include "test_support.h"
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <stdexcept>

#include "microdit/io/png.h"
#include "microdit/train/tensorboard.h"

namespace microdit::train {
namespace {

namespace fs = std::filesystem;

// ---- a minimal protobuf wire-format reader, independent of the writer ----
struct Field {
  uint32_t number = 0, wire = 0;
  uint64_t varint = 0;  // wire 0
  std::string bytes;    // wire 1 (8 bytes), 2 (payload), 5 (4 bytes)
};

uint64_t read_varint(const std::string& s, std::size_t& pos) {
  uint64_t value = 0;
  for (int shift = 0;; shift += 7) {
    const auto byte = static_cast<uint8_t>(s.at(pos++));
    value |= uint64_t{byte & 0x7Fu} << shift;
    if (!(byte & 0x80)) return value;
  }
}

std::vector<Field> decode(const std::string& message) {
  std::vector<Field> fields;
  std::size_t pos = 0;
  while (pos < message.size()) {
    const uint64_t key = read_varint(message, pos);
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (f.wire == 0) {
      f.varint = read_varint(message, pos);
    } else {
      const std::size_t n = f.wire == 1 ? 8 : f.wire == 5 ? 4 : read_varint(message, pos);
      f.bytes = message.substr(pos, n);
      EXPECT_EQ(f.bytes.size(), n) << "field " << f.number << " runs past the message";
      pos += n;
    }
    fields.push_back(std::move(f));
  }
  return fields;
}

const Field& field(const std::vector<Field>& fields, uint32_t number) {
  for (const auto& f : fields) {
    if (f.number == number) return f;
  }
  throw std::runtime_error("no field " + std::to_string(number));
}

template <class T>
T fixed(const Field& f) {
  T value;
  EXPECT_EQ(f.bytes.size(), sizeof(T));
  std::memcpy(&value, f.bytes.data(), sizeof(T));
  return value;
}

// ---- helpers ----
fs::path scratch_dir(const std::string& test) {
  const auto dir =
      fs::temp_directory_path() / ("microdit-tfevents-" + std::to_string(::getpid()) + "-" + test);
  test::remove_tree(dir);
  return dir;
}

testing::AssertionResult rejected_naming(const fs::path& path, const std::string& piece) {
  try {
    read_tfevents_records(path);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find(piece) != std::string::npos) {
      return testing::AssertionSuccess();
    }
    return testing::AssertionFailure()
           << "message \"" << e.what() << "\" lacks \"" << piece << "\"";
  }
  return testing::AssertionFailure() << "accepted";
}

// ---- tests ----
TEST(TensorBoard, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(TensorBoard, MaskedCrcMatchesTheRustboardTestVector) {
  const std::string data = std::string("\x1a\x11", 2) + "CRC test, one two";
  EXPECT_EQ(masked_crc32c(data.data(), data.size()), 0x5794d08au);
}

TEST(TensorBoard, FileNameFollowsTheTensorFlowPattern) {
  const auto dir = scratch_dir("name");
  EventWriter first(dir);
  EventWriter second(dir);
  const std::regex pattern(R"(events\.out\.tfevents\.\d{10}\.[^.]+.*\.(\d+)\.(\d+))");
  std::smatch match;
  const std::string name = first.path().filename().string();
  ASSERT_TRUE(std::regex_match(name, match, pattern)) << name;
  EXPECT_EQ(match[1].str(), std::to_string(::getpid()));
  EXPECT_EQ(first.path().parent_path(), dir);
  EXPECT_NE(first.path(), second.path()) << "the per-process counter keeps writers apart";
  test::remove_tree(dir);
}

TEST(TensorBoard, FirstRecordIsTheFileVersion) {
  const auto dir = scratch_dir("version");
  EventWriter writer(dir);
  const auto records = read_tfevents_records(writer.path());
  ASSERT_EQ(records.size(), 1u);
  const auto event = decode(records[0]);
  EXPECT_EQ(field(event, 1).wire, 1u);  // wall_time, double
  EXPECT_GT(fixed<double>(field(event, 1)), 1.6e9);
  EXPECT_EQ(field(event, 3).bytes, "brain.Event:2");
  EXPECT_EQ(static_cast<uint8_t>(records[0][0]), 0x09);  // key byte of wall_time
  test::remove_tree(dir);
}

TEST(TensorBoard, ScalarEventEncodesTagStepAndFloat) {
  const auto dir = scratch_dir("scalar");
  EventWriter writer(dir);
  writer.add_scalar("train/loss", 0.4375, 1234);
  writer.add_scalar("train/lr", 2.4e-4, 300000);
  const auto records = read_tfevents_records(writer.path());
  ASSERT_EQ(records.size(), 3u);

  const auto event = decode(records[1]);
  EXPECT_EQ(field(event, 2).varint, 1234u);
  const auto summary = decode(field(event, 5).bytes);
  ASSERT_EQ(summary.size(), 1u);
  const auto value = decode(field(summary, 1).bytes);
  EXPECT_EQ(field(value, 1).bytes, "train/loss");
  EXPECT_EQ(field(value, 2).wire, 5u);
  EXPECT_EQ(fixed<float>(field(value, 2)), 0.4375f);
  // The exact bytes of the Value: 0x0A len "train/loss" 0x15 float32 LE.
  const std::string expected_value =
      std::string("\x0a\x0atrain/loss\x15", 13) + std::string("\x00\x00\xe0\x3e", 4);  // 0.4375f
  EXPECT_EQ(field(summary, 1).bytes, expected_value);

  const auto second = decode(records[2]);
  EXPECT_EQ(field(second, 2).varint, 300000u);
  const auto second_value = decode(field(decode(field(second, 5).bytes), 1).bytes);
  EXPECT_EQ(fixed<float>(field(second_value, 2)), 2.4e-4f);
  test::remove_tree(dir);
}

TEST(TensorBoard, ImageEventCarriesSizeColorspaceAndPng) {
  const auto dir = scratch_dir("image");
  EventWriter writer(dir);
  const auto image = at::randint(0, 256, {6, 10, 3}, at::kByte);  // (H, W, C)
  writer.add_image("samples", image, 7);
  const auto records = read_tfevents_records(writer.path());
  ASSERT_EQ(records.size(), 2u);
  const auto event = decode(records[1]);
  EXPECT_EQ(field(event, 2).varint, 7u);
  const auto value = decode(field(decode(field(event, 5).bytes), 1).bytes);
  EXPECT_EQ(field(value, 1).bytes, "samples");
  const auto encoded = decode(field(value, 4).bytes);
  EXPECT_EQ(field(encoded, 1).varint, 6u);   // height
  EXPECT_EQ(field(encoded, 2).varint, 10u);  // width
  EXPECT_EQ(field(encoded, 3).varint, 3u);   // colorspace RGB
  EXPECT_EQ(field(encoded, 4).bytes, io::encode_png(image));
  EXPECT_THROW(writer.add_image("bad", at::zeros({6, 10, 3}), 8), std::invalid_argument);
  test::remove_tree(dir);
}

TEST(TensorBoard, RecordsAreFramedWithLengthAndCrcs) {
  const auto dir = scratch_dir("framing");
  EventWriter writer(dir);
  for (int step = 0; step < 5; ++step) writer.add_scalar("x", step * 0.5, step);
  const std::string bytes = test::read_bytes(writer.path());
  const auto records = read_tfevents_records(writer.path());
  ASSERT_EQ(records.size(), 6u);
  std::size_t total = 0;
  for (const auto& r : records) total += 8 + 4 + r.size() + 4;
  EXPECT_EQ(total, bytes.size());
  // The first record by hand: little-endian length, then its masked CRC.
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  EXPECT_EQ(length, records[0].size());
  uint32_t length_crc = 0;
  std::memcpy(&length_crc, bytes.data() + 8, 4);
  EXPECT_EQ(length_crc, masked_crc32c(bytes.data(), 8));
  test::remove_tree(dir);
}

TEST(TensorBoard, CorruptedOrTruncatedFilesAreRejectedNamingTheRecord) {
  const auto dir = scratch_dir("corrupt");
  fs::path path;
  {
    EventWriter writer(dir);
    writer.add_scalar("a", 1.0, 1);
    writer.add_scalar("b", 2.0, 2);
    path = writer.path();
  }
  const std::string good = test::read_bytes(path);
  const auto records = read_tfevents_records(path);
  ASSERT_EQ(records.size(), 3u);
  const std::size_t third = good.size() - (records[2].size() + 16);  // offset of record 2

  std::string bad = good;
  bad[third + 12 + 3] ^= 0x40;  // a data byte of record 2
  test::write_bytes(path, bad);
  EXPECT_TRUE(rejected_naming(path, "record 2"));
  EXPECT_TRUE(rejected_naming(path, "data CRC"));

  bad = good;
  bad[third + 1] ^= 0x01;  // the length of record 2
  test::write_bytes(path, bad);
  EXPECT_TRUE(rejected_naming(path, "length CRC"));

  test::write_bytes(path, good.substr(0, good.size() - 3));
  EXPECT_TRUE(rejected_naming(path, "record 2 (at byte " + std::to_string(third) + ")"));
  EXPECT_TRUE(rejected_naming(path, "truncated"));

  test::write_bytes(path, good.substr(0, third + 5));
  EXPECT_TRUE(rejected_naming(path, "truncated"));

  EXPECT_THROW(read_tfevents_records(dir / "missing"), std::runtime_error);
  test::remove_tree(dir);
}

TEST(TensorBoard, NegativeStepsUseTenByteVarints) {
  const auto dir = scratch_dir("negative");
  EventWriter writer(dir);
  writer.add_scalar("x", 1.0, -1);
  const auto records = read_tfevents_records(writer.path());
  EXPECT_EQ(static_cast<int64_t>(field(decode(records[1]), 2).varint), -1);
  test::remove_tree(dir);
}

}  // namespace
}  // namespace microdit::train
