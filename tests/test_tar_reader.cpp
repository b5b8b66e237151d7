// Tar and WebDataset reading against archives written by Python's tarfile in the ustar, GNU and
// pax formats, plain and compressed with gzip and zstd
// (scripts/reference/make_decode_reference.py -> tests/data/tar), and damaged copies.
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
#include "test_one_line.h"
#include "test_support.h"

namespace microdit::data {
namespace {

namespace fs = std::filesystem;
using io::Json;

const fs::path kData = test::source_dir() / "tests" / "data" / "tar";

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

// Every reader needs libarchive: builds without it skip these (and check the error they give).
class Tar : public testing::Test {
 protected:
  void SetUp() override {
#ifndef MICRODIT_HAVE_LIBARCHIVE
    GTEST_SKIP() << "this build has no libarchive";
#endif
  }
};
using TarReaderTest = Tar;
using WebDatasetReaderTest = Tar;

// Reads to the end; returns how many members there were.
int read_all(TarReader& reader) {
  int count = 0;
  while (reader.next()) ++count;
  return count;
}

TEST_F(TarReaderTest, MembersAsPythonTarfileListsThem) {
  // ustar, GNU, pax, GNU with base-256 sizes, pax gzipped, GNU compressed with zstd
  ASSERT_EQ(expected().size(), 6u);
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

TEST_F(TarReaderTest, LongAndNonAsciiNamesSurvive) {
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

TEST_F(WebDatasetReaderTest, SamplesAsWebdatasetGroupsThem) {
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

TEST_F(TarReaderTest, TruncatedMemberDataIsAnError) {
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
  EXPECT_TRUE(test::throws_with([&] { reader.next(); }, cut.string(),
                                {"member 'dir/00002.json'", "Truncated tar archive"}));
}

TEST_F(TarReaderTest, TruncatedHeaderIsAnError) {
  test::TempDir dir("tar");
  const std::string bytes = test::read_bytes(kData / "wds_gnu.tar");
  const std::size_t header = bytes.find(std::string("00000.txt\0", 10));
  ASSERT_EQ(header % 512, 0u);
  const fs::path cut = dir.path / "cut.tar";
  test::write_bytes(cut, bytes.substr(0, header + 300));
  TarReader reader(cut);
  EXPECT_TRUE(test::throws_with([&] { read_all(reader); }, cut.string(),
                                {"header after member '00000.jpg'", "Truncated tar archive"}));
  // A GNU long name whose member header is missing is an error too, not the end.
  std::size_t long_name = bytes.find("././@LongLink");
  while (bytes[long_name + 156] != 'L') long_name = bytes.find("././@LongLink", long_name + 1);
  const fs::path cut_long = dir.path / "cut_long.tar";
  test::write_bytes(cut_long, bytes.substr(0, long_name + 1024));  // the 'L' header and its data
  TarReader long_reader(cut_long);
  EXPECT_TRUE(test::throws_with([&] { read_all(long_reader); }, cut_long.string(),
                                {"header after member 'longlink.txt'"}));
}

TEST_F(TarReaderTest, BadChecksumNamesTheMemberBefore) {
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
                                {"header after member '00000.jpg'", "Damaged tar archive"}));
}

TEST_F(TarReaderTest, EmptyFileHasNoMembersAndMissingFileThrows) {
  test::TempDir dir("tar");
  test::write_bytes(dir.path / "empty.tar", "");
  TarReader empty(dir.path / "empty.tar");
  EXPECT_EQ(read_all(empty), 0);
  EXPECT_FALSE(WebDatasetReader(dir.path / "empty.tar").next_sample());
  const fs::path missing = dir.path / "missing.tar";
  EXPECT_TRUE(
      test::throws_with([&] { TarReader reader(missing); }, missing.string(), {"cannot open"}));
  const fs::path text = dir.path / "text.tar";
  test::write_bytes(text, std::string(2000, 'x'));
  EXPECT_TRUE(test::throws_with([&] { TarReader reader(text); }, text.string(),
                                {"cannot open as a tar archive"}));
}

TEST_F(TarReaderTest, DeclaredSizeBeyondTheFileIsRefusedBeforeReading) {
  // One member declaring 4 GiB for 5 bytes: refused from the header, nothing allocated.
  const fs::path plain = kData / "damaged" / "oversize.tar";
  TarReader reader(plain);
  EXPECT_TRUE(test::throws_with([&] { reader.next(); }, plain.string(),
                                {"member '00000.txt'", "declares 4294967296 bytes",  // header at 0
                                 "only " + std::to_string(fs::file_size(plain)) + " follow"}));
  // Compressed, the file's size says nothing: members over 1 GiB are refused.
  const fs::path gzipped = kData / "damaged" / "oversize.tar.gz";
  TarReader gz_reader(gzipped);
  EXPECT_TRUE(test::throws_with([&] { gz_reader.next(); }, gzipped.string(),
                                {"member '00000.txt'", "declares 4294967296 bytes", "1073741824"}));
}

// A GNU tar header whose size field holds 2^40 in base-256, followed by 5 bytes of data.
std::string tar_claiming_2_to_40_bytes() {
  std::string header(512, '\0');
  header.replace(0, 9, "00000.txt");
  header.replace(100, 7, "0000644");
  header[124] = static_cast<char>(0x80);  // base-256 size: big-endian in the remaining 11 bytes
  header[135 - 5] = 0x01;                 // 2^40 = 0x01 followed by five zero bytes
  header[156] = '0';
  header.replace(257, 8, "ustar  \0", 8);
  header.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  char checksum[8];
  std::snprintf(checksum, sizeof checksum, "%06o", sum);
  header.replace(148, 7, checksum, 7);
  return header + std::string("hello") + std::string(512 - 5 + 1024, '\0');
}

TEST_F(TarReaderTest, MemberClaiming2To40BytesIsOneLine) {
  test::TempDir dir("tar");
  const fs::path path = dir.path / "huge-member.tar";
  test::write_bytes(path, tar_claiming_2_to_40_bytes());
  TarReader reader(path);
  EXPECT_TRUE(test::throws_one_line([&] { reader.next(); }, path.string(),
                                    {"member '00000.txt'", "declares 1099511627776 bytes"}));
}

TEST_F(TarReaderTest, TruncatedCompressedShardIsAnError) {
  test::TempDir dir("tar");
  const std::string bytes = test::read_bytes(kData / "wds_pax.tar.gz");
  const fs::path cut = dir.path / "cut.tar.gz";
  test::write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(test::throws_with(
      [&] {
        TarReader reader(cut);
        read_all(reader);
      },
      cut.string(), {"truncated gzip input"}));
}

TEST(TarReader, RecognisesCompressedTarNames) {
  for (const char* name : {"a.tar", "dir/b.TAR", "c.tar.gz", "d.tgz", "e.tar.zst", "f.TAR.GZ"}) {
    EXPECT_TRUE(is_tar_file(name)) << name;
  }
  for (const char* name : {"a.tar.bz2", "b.gz", "c.zst", "tar", "d.tarx", "e.jpg"}) {
    EXPECT_FALSE(is_tar_file(name)) << name;
  }
}

#ifndef MICRODIT_HAVE_LIBARCHIVE
TEST(TarReader, WithoutLibarchiveSaysHowToGetIt) {
  const fs::path shard = kData / "wds_ustar.tar";
  EXPECT_TRUE(test::throws_with([&] { TarReader reader(shard); }, shard.string(),
                                {"this build has no libarchive (apt install libarchive-dev)"}));
}
#endif

}  // namespace
}  // namespace microdit::data
