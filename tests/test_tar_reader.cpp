// Tar and WebDataset reading against archives written by Python's tarfile in the ustar, GNU and
// pax formats (scripts/reference/make_decode_reference.py -> tests/data/tar), and damaged copies.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "microdit/data/tar_reader.h"
#include "microdit/io/hashes.h"
#include "microdit/io/json.h"
#include "test_support.h"

namespace microdit::data {
namespace {

namespace fs = std::filesystem;
using io::Json;

const fs::path kData = fs::path(MICRODIT_SOURCE_DIR) / "tests" / "data" / "tar";

const Json& expected() {
  static const Json json = io::read_json_file(kData / "expected.json");
  return json;
}

// The generator's member bytes: "<name>|" repeated, cut to `size` (lowercased, as extensions are).
std::string payload(const std::string& name, std::size_t size) {
  std::string bytes;
  while (bytes.size() < size) bytes += name + "|";
  return bytes.substr(0, size);
}

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Reads to the end; returns how many members there were.
int read_all(TarReader& reader) {
  int count = 0;
  while (reader.next()) ++count;
  return count;
}

TEST(TarReader, MembersAsPythonTarfileListsThem) {
  ASSERT_EQ(expected().size(), 4u);  // ustar, GNU, pax, GNU with base-256 sizes
  for (const auto& [archive, listing] : expected().items()) {
    TarReader reader(kData / archive);
    for (const Json& member : listing.at("members")) {
      const auto got = reader.next();
      ASSERT_TRUE(got) << archive << ": ends before " << member.at("name").get<std::string>();
      EXPECT_EQ(got->name, member.at("name").get<std::string>()) << archive;
      EXPECT_EQ(got->data.size(), member.at("size")) << got->name;
      EXPECT_EQ(io::hex_digest("sha1", got->data), member.at("sha1")) << got->name;
    }
    EXPECT_FALSE(reader.next()) << archive << " has more members than tarfile lists";
  }
}

TEST(TarReader, LongAndNonAsciiNamesSurvive) {
  // Each format's long-name mechanism: ustar prefix, GNU 'L' entry, pax 'x' path record.
  const std::string split =
      "long/" + std::string(60, 'd') + "/" + std::string(60, 'e') + "/00007.txt";
  const std::string gnu_long = std::string(120, 'f') + "/00008.json";
  std::vector<std::string> names;
  TarReader reader(kData / "wds_pax.tar");
  while (auto member = reader.next()) names.push_back(member->name);
  for (const std::string& name : {split, gnu_long, std::string("unicod\xC3\xA9/00009.txt")}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
}

TEST(WebDatasetReader, SamplesAsWebdatasetGroupsThem) {
  for (const auto& [archive, listing] : expected().items()) {
    WebDatasetReader reader(kData / archive);
    for (const Json& sample : listing.at("samples")) {
      const auto got = reader.next_sample();
      ASSERT_TRUE(got) << archive << ": ends before " << sample.at("key").get<std::string>();
      EXPECT_EQ(got->key, sample.at("key").get<std::string>()) << archive;
      std::vector<std::string> extensions;
      for (const Json& e : sample.at("extensions")) extensions.push_back(e.get<std::string>());
      std::sort(extensions.begin(), extensions.end());
      std::vector<std::string> got_extensions;
      for (const auto& [extension, data] : got->files) {
        got_extensions.push_back(extension);
        const std::string name = got->key + "." + extension;
        EXPECT_EQ(lowercase(data), payload(name, data.size())) << name;
      }
      EXPECT_EQ(got_extensions, extensions) << archive << " " << got->key;
    }
    EXPECT_FALSE(reader.next_sample()) << archive;
    EXPECT_EQ(reader.skipped(), listing.at("skipped").get<int64_t>()) << archive;
  }
}

TEST(TarReader, TruncatedMemberDataIsAnError) {
  test::TempDir dir("tar");
  const std::string bytes = test::read_bytes(kData / "wds_ustar.tar");
  const std::size_t member = bytes.find("dir/00002.json|dir/00002.json|");
  ASSERT_NE(member, std::string::npos);
  const fs::path cut = dir.path / "cut.tar";
  test::write_bytes(cut, bytes.substr(0, member + 100));  // inside the 513 bytes of dir/00002.json
  TarReader reader(cut);
  for (const char* before : {"00000.jpg", "00000.txt", "00001.png", "00001.txt"}) {
    EXPECT_EQ(reader.next().value().name, before);
  }
  EXPECT_TRUE(
      test::throws_with([&] { reader.next(); }, cut.string(), {"'dir/00002.json'", "truncated"}));
}

TEST(TarReader, TruncatedHeaderIsAnError) {
  test::TempDir dir("tar");
  const std::string bytes = test::read_bytes(kData / "wds_gnu.tar");
  const std::size_t header = bytes.find(std::string("00000.txt\0", 10));
  ASSERT_EQ(header % 512, 0u);
  const fs::path cut = dir.path / "cut.tar";
  test::write_bytes(cut, bytes.substr(0, header + 300));
  TarReader reader(cut);
  EXPECT_TRUE(test::throws_with([&] { read_all(reader); }, cut.string(),
                                {"byte offset " + std::to_string(header), "truncated"}));
  // A GNU long name whose member header is missing is truncated too.
  std::size_t long_name = bytes.find("././@LongLink");
  while (bytes[long_name + 156] != 'L') long_name = bytes.find("././@LongLink", long_name + 1);
  const fs::path cut_long = dir.path / "cut_long.tar";
  test::write_bytes(cut_long, bytes.substr(0, long_name + 1024));  // the 'L' header and its data
  TarReader long_reader(cut_long);
  EXPECT_TRUE(
      test::throws_with([&] { read_all(long_reader); }, cut_long.string(), {"truncated", "long/"}));
}

TEST(TarReader, BadChecksumNamesTheOffset) {
  test::TempDir dir("tar");
  std::string bytes = test::read_bytes(kData / "wds_ustar.tar");
  const std::size_t header = bytes.find(std::string("00000.txt\0", 10));
  ASSERT_EQ(header % 512, 0u);
  bytes[header] = '1';  // "10000.txt": the stored checksum no longer matches
  const fs::path bad = dir.path / "bad.tar";
  test::write_bytes(bad, bytes);
  TarReader reader(bad);
  EXPECT_EQ(reader.next().value().name, "00000.jpg");
  EXPECT_TRUE(test::throws_with([&] { reader.next(); }, bad.string(),
                                {"checksum", "byte offset " + std::to_string(header)}));
}

TEST(TarReader, EmptyFileHasNoMembersAndMissingFileThrows) {
  test::TempDir dir("tar");
  test::write_bytes(dir.path / "empty.tar", "");
  TarReader empty(dir.path / "empty.tar");
  EXPECT_EQ(read_all(empty), 0);
  EXPECT_FALSE(WebDatasetReader(dir.path / "empty.tar").next_sample());
  const fs::path missing = dir.path / "missing.tar";
  EXPECT_TRUE(
      test::throws_with([&] { TarReader reader(missing); }, missing.string(), {"cannot open"}));
}

}  // namespace
}  // namespace microdit::data
