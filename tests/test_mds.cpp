// Tests for the MDS reader and writer, the merged index and the latent dataset, against fixtures
// written by MosaicML Streaming (scripts/reference/make_mds_reference.py -> tests/data/mds).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "microdit/data/mds.h"
#include "microdit/data/mds_dataset.h"
#include "microdit/io/hashes.h"
#include "microdit/io/json.h"
#include "test_one_line.h"
#include "test_support.h"

namespace microdit::data {
namespace {

namespace fs = std::filesystem;
using io::Json;

fs::path fixtures() { return test::source_dir() / "tests" / "data" / "mds"; }

// expected.json, loaded once.
const Json& expected() {
  static const Json json = io::read_json_file(fixtures() / "expected.json");
  return json;
}

const io::JsonArray& expected_samples(const std::string& fixture) {
  const Json& entry = expected().at(fixture);
  const Json* from = io::json_find(entry, "samples_from");
  return expected()
      .at(from ? from->get<std::string>() : fixture)
      .at("samples")
      .get_ref<const io::JsonArray&>();
}

std::vector<std::pair<std::string, std::string>> expected_columns(const std::string& fixture) {
  std::vector<std::pair<std::string, std::string>> columns;
  for (const auto& [name, encoding] : expected().at(fixture).at("columns").items()) {
    columns.emplace_back(name, encoding.get<std::string>());
  }
  return columns;
}

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

at::ScalarType numpy_dtype(const std::string& name) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"uint8", at::kByte},  {"int8", at::kChar},     {"uint16", at::kUInt16},
      {"int16", at::kShort}, {"float16", at::kHalf},  {"uint32", at::kUInt32},
      {"int32", at::kInt},   {"float32", at::kFloat}, {"uint64", at::kUInt64},
      {"int64", at::kLong},  {"float64", at::kDouble}};
  return kTypes.at(name);
}

std::string raw_bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

// The value the writer takes for an expected.json entry (the decoded value, not its bytes).
MDSValue value_from(const Json& description) {
  if (const Json* text = io::json_find(description, "text")) return text->get<std::string>();
  if (const Json* v = io::json_find(description, "int")) return v->get<int64_t>();
  if (const Json* v = io::json_find(description, "float_hex")) {
    double value;
    std::memcpy(&value, unhex(v->get<std::string>()).data(), 8);
    return value;
  }
  const std::string data = unhex(description.at("hex").get<std::string>());
  if (!description.contains("dtype")) return data;
  std::vector<int64_t> shape;
  for (const auto& dim : description.at("shape")) shape.push_back(dim.get<int64_t>());
  at::Tensor t = at::empty(shape, numpy_dtype(description.at("dtype").get<std::string>()));
  std::memcpy(t.data_ptr(), data.data(), data.size());
  return t;
}

MDSSample sample_from(const Json& row) {
  MDSSample sample;
  for (const auto& [name, description] : row.items()) sample.set(name, value_from(description));
  return sample;
}

testing::AssertionResult same_value(const MDSValue& got, const MDSValue& want) {
  if (got.index() != want.index()) {
    return testing::AssertionFailure() << "kinds differ: " << got.index() << " vs " << want.index();
  }
  if (const auto* t = std::get_if<at::Tensor>(&want)) {
    const auto& g = std::get<at::Tensor>(got);
    if (g.scalar_type() != t->scalar_type() || g.sizes() != t->sizes() ||
        raw_bytes(g) != raw_bytes(*t)) {
      return testing::AssertionFailure() << "tensor " << g.scalar_type() << g.sizes() << " vs "
                                         << t->scalar_type() << t->sizes();
    }
    return testing::AssertionSuccess();
  }
  if (const auto* d = std::get_if<double>(&want)) {  // bitwise: nan and -0.0 included
    const double g = std::get<double>(got);
    if (std::memcmp(&g, d, 8) != 0) return testing::AssertionFailure() << g << " vs " << *d;
    return testing::AssertionSuccess();
  }
  if (const auto* s = std::get_if<std::string>(&want)) {
    if (std::get<std::string>(got) != *s) return testing::AssertionFailure() << "bytes differ";
    return testing::AssertionSuccess();
  }
  if (std::get<int64_t>(got) != std::get<int64_t>(want)) {
    return testing::AssertionFailure()
           << std::get<int64_t>(got) << " vs " << std::get<int64_t>(want);
  }
  return testing::AssertionSuccess();
}

void expect_matches_fixture(const MDSReader& reader, const std::string& fixture) {
  const auto& rows = expected_samples(fixture);
  ASSERT_EQ(reader.size(), static_cast<int64_t>(rows.size()));
  for (int64_t i = 0; i < reader.size(); ++i) {
    const MDSSample got = reader.get(i);
    const MDSSample want = sample_from(rows[i]);
    ASSERT_EQ(got.values().size(), want.values().size()) << "sample " << i;
    for (const auto& [name, value] : want.values()) {
      EXPECT_TRUE(same_value(got.at(name), value)) << fixture << " sample " << i << " " << name;
    }
  }
}

// Passes when `f` throws E whose message contains every piece.
template <class E = std::runtime_error, class F>
testing::AssertionResult fails_with(F&& f, std::initializer_list<std::string> pieces) {
  return test::throws_with<E>(f, "", pieces);
}

class MDSTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("microdit-mds-" + std::to_string(::getpid()) + "-" + info->name());
    test::remove_tree(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { test::remove_tree(dir_); }

  // A copy of fixture `name` in the temporary directory, under `as` (default: the same name).
  fs::path copy_fixture(const std::string& name, std::string as = "") {
    if (as.empty()) as = name;
    fs::copy(fixtures() / name, dir_ / as, fs::copy_options::recursive);
    return dir_ / as;
  }

  fs::path write_fixture_samples(const std::string& fixture, const fs::path& out) {
    const Json& entry = expected().at(fixture);
    std::vector<std::string> hashes;
    for (const auto& h : entry.at("hashes")) hashes.push_back(h.get<std::string>());
    const Json& compression = entry.at("compression");
    MDSWriter writer(out, expected_columns(fixture), entry.at("size_limit").get<int64_t>(),
                     compression.is_null() ? "" : compression.get<std::string>(), hashes);
    for (const auto& row : expected_samples(fixture)) writer.write(sample_from(row));
    writer.finish();
    return out;
  }

  fs::path dir_;
};

std::vector<std::string> files_under(const fs::path& root) {
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) names.push_back(fs::relative(entry.path(), root).string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ------------------------------------------------------------------------------- hashes

TEST(MDSHashes, KnownDigests) {
  std::string long_input;
  for (int r = 0; r < 5; ++r) {
    for (int b = 0; b < 256; ++b) long_input.push_back(static_cast<char>(b));
  }
  std::string ramp;
  for (int b = 0; b < 37; ++b) ramp.push_back(static_cast<char>(b));
  struct Case {
    std::string data, md5, sha1, xxh32, xxh64;
  };
  // Digests from Python's hashlib and xxhash.
  const Case cases[] = {
      {"", "d41d8cd98f00b204e9800998ecf8427e", "da39a3ee5e6b4b0d3255bfef95601890afd80709",
       "02cc5d05", "ef46db3751d8e999"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72", "a9993e364706816aba3e25717850c26c9cd0d89d",
       "32d153ff", "44bc2cf5ad770999"},
      {long_input, "82829f1f3f2bb0f18b25f278e5bba8bd", "e37a04cb2353309f5cff4ee036cfb91a5e31cefd",
       "1695c58b", "afc184ad7938a354"},
      {std::string(55, 'x'), "04364420e25c512fd958a70738aa8f72",
       "cef734ba81a024479e09eb5a75b6ddae62e6abf1", "65880d4f", "65fe887802ab7672"},
      {std::string(56, 'x'), "668a72d5ba17f08e62dabcafad6db14b",
       "901305367c259952f4e7af8323f480d59f81335b", "18ce8347", "2a3b1263b101a3c7"},
      {std::string(64, 'x'), "c1bb4f81d892b2d57947682aeb252456",
       "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163", "f6216102", "a97161d5402f516e"},
      {ramp, "7c4bba98253ca834bf9ed43fd8b2f959", "a82cb42d89daf5fbc1d4a48476229c495782f98d",
       "778632d9", "d93fa2dfee5c24c9"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(io::hex_digest("md5", c.data), c.md5) << c.data.size();
    EXPECT_EQ(io::hex_digest("sha1", c.data), c.sha1) << c.data.size();
    EXPECT_EQ(io::hex_digest("xxh32", c.data), c.xxh32) << c.data.size();
    EXPECT_EQ(io::hex_digest("xxh64", c.data), c.xxh64) << c.data.size();
  }
  EXPECT_EQ(io::hex_digest("xxh3_64", "abc"), std::nullopt);
  EXPECT_FALSE(io::is_implemented_hash("sha256"));
}

TEST(MDSFloatRepr, MatchesPython) {
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {-0.0, "-0.0"},
      {0.0, "0.0"},
      {1234.5, "1234.5"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {123456789.125, "123456789.125"},
      {-2.5e-07, "-2.5e-07"},
      {1.0 / 3.0, "0.3333333333333333"},
      {100.0, "100.0"},
      {1e22, "1e+22"},
      {9007199254740992.0, "9007199254740992.0"},
      {INFINITY, "inf"},
      {-INFINITY, "-inf"},
      {NAN, "nan"}};
  for (const auto& [value, text] : cases) EXPECT_EQ(python_float_repr(value), text);
}

// ------------------------------------------------------------------------------- reader

TEST_F(MDSTest, ReadsUncompressedFixture) {
  MDSReader reader(fixtures() / "plain");
  EXPECT_EQ(reader.num_shards(), 3);
  auto want = expected_columns("plain");
  std::vector<std::string> names;
  for (const auto& [name, encoding] : want) names.push_back(name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(reader.columns(), names);
  EXPECT_TRUE(reader.unchecked_hashes().empty());
  expect_matches_fixture(reader, "plain");
  // Accessors of the decoded kinds.
  const MDSSample sample = reader.get(2);
  EXPECT_EQ(sample.str("caption"), "caf\u00e9 \u2615 \u65e5\u672c");
  EXPECT_EQ(sample.integer("id"), INT64_MAX);
  EXPECT_EQ(sample.integer("u8"), 17);
  EXPECT_EQ(sample.integer("u64"), 5);
  EXPECT_DOUBLE_EQ(sample.real("f64"), -1e308);
  EXPECT_EQ(sample.real("str_float"), 1e-05);
  EXPECT_EQ(sample.tensor("arr_fixed").sizes(), (at::IntArrayRef{2, 3}));
  EXPECT_TRUE(fails_with([&] { (void)sample.integer("caption"); }, {"caption", "std::string"}));
  EXPECT_TRUE(fails_with([&] { (void)reader.get(0).integer("u64"); }, {"u64", "exceeds int64"}));
}

#ifdef MICRODIT_HAVE_ZSTD
TEST_F(MDSTest, ReadsZstdFixture) {
  MDSReader reader(fixtures() / "zstd");
  EXPECT_EQ(reader.num_shards(), 3);
  EXPECT_TRUE(reader.unchecked_hashes().empty());
  expect_matches_fixture(reader, "zstd");
}
#else
TEST_F(MDSTest, ZstdFixtureNeedsLibzstd) {
  EXPECT_TRUE(
      fails_with([] { MDSReader reader(fixtures() / "zstd"); }, {"zstd shards need libzstd"}));
}
#endif

TEST_F(MDSTest, ReadsMergedFixture) {
  MDSReader reader(fixtures() / "merged");
  EXPECT_EQ(reader.num_shards(), 3);
  expect_matches_fixture(reader, "merged");
  EXPECT_NE(reader.describe_sample(4).find("1/shard.00000.mds: sample 1"), std::string::npos);
}

TEST_F(MDSTest, ReadsChosenColumnsAndRejectsOthers) {
  MDSReader reader(fixtures() / "plain");
  const MDSSample sample = reader.get(5, {"caption", "i16"});
  EXPECT_EQ(sample.values().size(), 2u);
  EXPECT_EQ(sample.str("caption"), std::string(40, 'x'));
  EXPECT_TRUE(fails_with([&] { reader.get(0, {"latents_512"}); },
                         {"plain", "no column \"latents_512\"", "caption_latents"}));
  EXPECT_TRUE(fails_with<std::out_of_range>([&] { reader.get(11); }, {"index 11", "[0, 11)"}));
  EXPECT_TRUE(fails_with<std::out_of_range>([&] { reader.get(-1); }, {"index -1"}));
}

TEST_F(MDSTest, SmallCacheAndThreads) {
  MDSReaderOptions options;
  options.cache_bytes = 1;  // every other shard access evicts
  options.max_open_shards = 1;
#ifdef MICRODIT_HAVE_ZSTD
  const std::string fixture = "zstd";  // decompressed shards: evictions free memory
#else
  const std::string fixture = "plain";
#endif
  MDSReader reader(fixtures() / fixture, options);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (int64_t i = 0; i < reader.size(); ++i) {
          const int64_t k = (i * 7 + t) % reader.size();
          if (reader.get(k, {"caption"}).str("caption") !=
              expected_samples(fixture)[k].at("caption").at("text").get<std::string>()) {
            ++failures[t];
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

// ------------------------------------------------------------------------------- writer

TEST_F(MDSTest, WriterMatchesPythonWriterBytes) {
  const fs::path out = write_fixture_samples("plain", dir_ / "ours");
  const fs::path reference = fixtures() / "plain";
  ASSERT_EQ(files_under(out), files_under(reference));
  for (const auto& name : files_under(reference)) {
    EXPECT_EQ(test::read_bytes(out / name), test::read_bytes(reference / name)) << name;
  }
}

#ifdef MICRODIT_HAVE_ZSTD
TEST_F(MDSTest, ZstdWriterMatchesPythonRawData) {
  const fs::path out = write_fixture_samples("zstd", dir_ / "ours");
  // The zstd frames may differ between zstd builds; the uncompressed shards may not.
  const Json ours = io::read_json_file(out / "index.json");
  const Json theirs = io::read_json_file(fixtures() / "zstd" / "index.json");
  ASSERT_EQ(ours.at("shards").size(), theirs.at("shards").size());
  for (std::size_t k = 0; k < ours.at("shards").size(); ++k) {
    const Json& a = ours.at("shards").at(k);
    const Json& b = theirs.at("shards").at(k);
    EXPECT_EQ(a.at("samples"), b.at("samples"));
    EXPECT_EQ(a.at("compression"), b.at("compression"));
    EXPECT_EQ(a.at("raw_data"), b.at("raw_data")) << "shard " << k;  // basename, bytes, hashes
    EXPECT_EQ(a.at("zip_data").at("basename"), b.at("zip_data").at("basename"));
  }
  expect_matches_fixture(MDSReader(out), "zstd");
}
#endif

TEST_F(MDSTest, WriterAndMergeIndexMatchPythonMergedLayout) {
  const Json& entry = expected().at("merged");
  const auto& rows = expected_samples("merged");
  const fs::path root = dir_ / "merged";
  std::size_t next = 0;
  std::vector<std::string> subdirs;
  for (std::size_t part = 0; part < entry.at("part_sizes").size(); ++part) {
    subdirs.push_back(entry.at("subdirs").at(part).get<std::string>());
    MDSWriter writer(root / subdirs.back(), expected_columns("merged"),
                     entry.at("size_limit").get<int64_t>());
    for (int64_t i = 0; i < entry.at("part_sizes").at(part).get<int64_t>(); ++i) {
      writer.write(sample_from(rows[next++]));
    }
    writer.finish();
  }
  merge_index(root, subdirs);
  const fs::path reference = fixtures() / "merged";
  ASSERT_EQ(files_under(root), files_under(reference));
  for (const auto& name : files_under(reference)) {
    EXPECT_EQ(test::read_bytes(root / name), test::read_bytes(reference / name)) << name;
  }
  EXPECT_TRUE(
      fails_with<std::invalid_argument>([&] { merge_index(root, {"../x"}); }, {"relative path"}));
  EXPECT_TRUE(fails_with([&] { merge_index(root, {"2"}); }, {"2/index.json"}));
}

TEST_F(MDSTest, RoundTripsEveryDtypeShapeCodeAndScalar) {
  std::vector<std::pair<std::string, std::string>> columns = {
      {"any", "ndarray"}, {"wide", "ndarray:uint8"}, {"half", "float16"}, {"u64", "uint64"},
      {"f", "str_float"}, {"n", "str_int"},          {"j", "json"}};
  MDSWriter writer(dir_ / "out", columns, /*size_limit=*/0);
  const at::ScalarType dtypes[] = {at::kByte,   at::kChar,   at::kUInt16, at::kShort,
                                   at::kHalf,   at::kUInt32, at::kInt,    at::kFloat,
                                   at::kUInt64, at::kLong,   at::kDouble};
  std::vector<MDSSample> written;
  for (std::size_t d = 0; d < std::size(dtypes); ++d) {
    MDSSample sample;
    sample.set(
        "any",
        (at::arange(1, 7, at::kDouble) * (d % 2 ? -1 : 1) + 100).to(dtypes[d]).reshape({1, 2, 3}));
    // Largest dimension 1, 300, 70000: shape codes uint8, uint16, uint32.
    const int64_t width = d % 3 == 0 ? 1 : d % 3 == 1 ? 300 : 70000;
    sample.set("wide", at::full({width, 1}, static_cast<int64_t>(d), at::kByte));
    sample.set("half", 0.5 * static_cast<double>(d));
    sample.set("u64", static_cast<int64_t>(d) * 1000);
    sample.set("f", 1.0 / (static_cast<double>(d) + 3.0));
    sample.set("n", -static_cast<int64_t>(d));
    sample.set("j", std::string("{\"d\": ") + std::to_string(d) + "}");
    writer.write(sample);
    written.push_back(sample);
  }
  writer.finish();
  MDSReader reader(dir_ / "out");
  ASSERT_EQ(reader.size(), static_cast<int64_t>(written.size()));
  EXPECT_EQ(reader.num_shards(), 1);
  for (int64_t i = 0; i < reader.size(); ++i) {
    const MDSSample got = reader.get(i);
    EXPECT_TRUE(same_value(got.at("any"), written[i].at("any"))) << i;
    EXPECT_TRUE(same_value(got.at("wide"), written[i].at("wide"))) << i;
    EXPECT_EQ(got.real("half"), 0.5 * static_cast<double>(i));
    EXPECT_EQ(got.tensor("half").scalar_type(), at::kHalf);
    EXPECT_EQ(got.integer("u64"), i * 1000);
    EXPECT_EQ(got.real("f"), 1.0 / (static_cast<double>(i) + 3.0));
    EXPECT_EQ(got.integer("n"), -i);
    EXPECT_EQ(got.str("j"), written[i].str("j"));
  }
}

TEST_F(MDSTest, WriterRejectsBadSettingsAndValues) {
  using Columns = std::vector<std::pair<std::string, std::string>>;
  const Columns columns = {{"x", "int"}};
  auto make = [&](const std::string& name, Columns c, int64_t limit, std::string compression,
                  std::vector<std::string> hashes) {
    MDSWriter writer(dir_ / name, std::move(c), limit, std::move(compression), std::move(hashes));
  };
  using E = std::invalid_argument;
  EXPECT_TRUE(fails_with<E>(
      [&] {
        make("a", {{"x", "float128"}}, 0, "", {});
      },
      {"unknown encoding \"float128\""}));
  EXPECT_TRUE(fails_with<E>(
      [&] {
        make("b", {{"img", "jpeg"}}, 0, "", {});
      },
      {"img", "image encodings are not supported (yet)"}));
  EXPECT_TRUE(fails_with<E>([&] { make("c", columns, int64_t{1} << 32, "", {}); }, {"size_limit"}));
  EXPECT_TRUE(fails_with<E>([&] { make("d", columns, 0, "gz", {}); }, {"gz", "only zstd"}));
  EXPECT_TRUE(fails_with<E>([&] { make("e", columns, 0, "", {"xxh64", "sha1"}); }, {"sorted"}));
  EXPECT_TRUE(fails_with<E>([&] { make("f", columns, 0, "", {"xxh3_64"}); },
                            {"xxh3_64", "not implemented"}));
  EXPECT_TRUE(fails_with<E>(
      [&] {
        make("g", {{"x", "int"}, {"x", "str"}}, 0, "", {});
      },
      {"listed twice"}));
  fs::create_directories(dir_ / "full");
  test::write_bytes(dir_ / "full" / "index.json", "{}");
  EXPECT_TRUE(fails_with([&] { make("full", columns, 0, "", {}); }, {"not empty"}));

  MDSWriter writer(dir_ / "values", {{"x", "int"}, {"u", "uint8"}, {"a", "ndarray:int16:2"}});
  auto write = [&](MDSValue x, MDSValue u, MDSValue a) {
    writer.write(MDSSample{{"x", std::move(x)}, {"u", std::move(u)}, {"a", std::move(a)}});
  };
  const at::Tensor a = at::zeros({2}, at::kShort);
  EXPECT_TRUE(fails_with<E>([&] { write(1.5, int64_t{1}, a); }, {"\"x\" (int)", "int64_t"}));
  EXPECT_TRUE(fails_with<E>([&] { write(std::string("abc"), int64_t{1}, a); },
                            {"\"x\"", "3 bytes", "stores 8"}));
  EXPECT_TRUE(fails_with<E>([&] { write(int64_t{1}, int64_t{300}, a); },
                            {"\"u\" (uint8)", "300 is out of range"}));
  EXPECT_TRUE(fails_with<E>([&] { write(int64_t{1}, int64_t{1}, at::zeros({3}, at::kShort)); },
                            {"\"a\"", "wrong shape"}));
  EXPECT_TRUE(fails_with<E>([&] { write(int64_t{1}, int64_t{1}, at::zeros({2}, at::kFloat)); },
                            {"\"a\"", "wrong dtype"}));
  EXPECT_TRUE(fails_with<E>(
      [&] {
        writer.write(MDSSample{{"x", int64_t{1}}});
      },
      {"no column \"a\""}));
  write(int64_t{1}, int64_t{255}, a);
  writer.finish();
  EXPECT_EQ(MDSReader(dir_ / "values").get(0).integer("u"), 255);
}

// ------------------------------------------------------------------------- corrupt data

TEST_F(MDSTest, TruncatedShardIsReported) {
  const fs::path dir = copy_fixture("plain");
  const fs::path shard = dir / "shard.00001.mds";
  const std::string data = test::read_bytes(shard);
  test::write_bytes(shard, data.substr(0, data.size() - 10));
  MDSReader reader(dir);
  EXPECT_NO_THROW(reader.get(0));  // shard 0 is intact
  EXPECT_TRUE(fails_with([&] { reader.get(5); },
                         {"shard.00001.mds", "truncated", std::to_string(data.size() - 10),
                          std::to_string(data.size())}));
  fs::remove(dir / "shard.00002.mds");
  EXPECT_TRUE(fails_with([&] { reader.get(10); }, {"shard.00002.mds", "cannot open"}));
  // A shard whose length agrees with index.json but whose offsets run past its end.
  const fs::path other = copy_fixture("plain", "offsets");
  std::string bad = test::read_bytes(other / "shard.00000.mds");
  const uint32_t past = static_cast<uint32_t>(bad.size() + 100);
  std::memcpy(bad.data() + 4 + 4 * 4, &past, 4);  // offsets[4] = end of the last sample
  test::write_bytes(other / "shard.00000.mds", bad);
  MDSReaderOptions no_hashes;
  no_hashes.verify_hashes = false;
  EXPECT_TRUE(fails_with([&] { MDSReader(other, no_hashes).get(0); },
                         {"shard.00000.mds", "bad offsets", "end at byte"}));
}

// An MDS folder written byte by byte: one shard of one sample whose only column, "arr"
// (encoding "ndarray": dtype and shape in the sample), holds `value`.
void write_one_ndarray_sample(const fs::path& dir, const std::string& value) {
  const std::string config =
      R"({"column_encodings":["ndarray"],"column_names":["arr"],"column_sizes":[null],)"
      R"("compression":null,"format":"mds","hashes":[],"size_limit":null,"version":2})";
  auto u32 = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  const std::string sample = u32(static_cast<uint32_t>(value.size())) + value;
  const uint32_t first = 12 + static_cast<uint32_t>(config.size());
  const std::string shard =
      u32(1) + u32(first) + u32(first + static_cast<uint32_t>(sample.size())) + config + sample;
  fs::create_directories(dir);
  test::write_bytes(dir / "shard.00000.mds", shard);
  test::write_bytes(dir / "index.json",
                    R"({"shards":[{"column_encodings":["ndarray"],"column_names":["arr"],)"
                    R"("column_sizes":[null],"compression":null,"format":"mds","hashes":[],)"
                    R"("raw_data":{"basename":"shard.00000.mds","bytes":)" +
                        std::to_string(shard.size()) +
                        R"(,"hashes":{}},"samples":1,"size_limit":null,"version":2,)"
                        R"("zip_data":null}],"version":2})");
}

// Shape (2^32, 2^32) of uint8 in 8-byte dimensions: 2^64 elements, more than int64 counts.
TEST_F(MDSTest, NdarrayWhoseElementCountOverflowsIsOneLine) {
  std::string value = {8, (2 << 2) | 3};  // uint8, two dimensions of 8 bytes each
  const uint64_t dim = uint64_t{1} << 32;
  for (int d = 0; d < 2; ++d) value.append(reinterpret_cast<const char*>(&dim), 8);
  write_one_ndarray_sample(dir_ / "overflow", value);
  MDSReader reader(dir_ / "overflow");
  EXPECT_TRUE(test::throws_one_line([&] { reader.get(0); },
                                    (dir_ / "overflow" / "shard.00000.mds").string(),
                                    {"column \"arr\"", "more bytes than int64 counts"}));
}

TEST_F(MDSTest, BadIndexJsonIsReported) {
  const fs::path dir = copy_fixture("plain");
  const std::string good = test::read_bytes(dir / "index.json");
  auto with_index = [&](const std::string& text) {
    test::write_bytes(dir / "index.json", text);
    return [dir] { MDSReader reader(dir); };
  };
  auto replaced = [&](const char* from, const char* to) {
    return test::replace_once(good, from, to);
  };
  EXPECT_TRUE(fails_with(with_index("{\"shards\": ["), {"index.json"}));
  EXPECT_TRUE(fails_with(with_index("{\"version\": 2}"), {"index.json", "missing key \"shards\""}));
  EXPECT_TRUE(fails_with(with_index(replaced("\"version\": 2}", "\"version\": 3}")),
                         {"index.json", "version 3 is not supported"}));
  EXPECT_TRUE(fails_with(with_index(replaced("\"column_encodings\"", "\"encodings\"")),
                         {"index.json", "shard 0", "missing key \"column_encodings\""}));
  EXPECT_TRUE(fails_with(with_index(replaced("\"ndarray:int16:2,3\"", "\"ndarray:int17\"")),
                         {"index.json", "arr_fixed", "unknown encoding \"ndarray:int17\""}));
  EXPECT_TRUE(fails_with(with_index(replaced("\"column_sizes\": [null, null, 12",
                                             "\"column_sizes\": [null, null, 13")),
                         {"arr_fixed", "column_size 13", "size is 12"}));
  EXPECT_TRUE(fails_with(with_index(replaced("\"basename\": \"shard.00000.mds\"",
                                             "\"basename\": \"../shard.00000.mds\"")),
                         {"leaves the dataset directory"}));
  EXPECT_TRUE(fails_with(with_index(replaced("\"format\": \"mds\"", "\"format\": \"csv\"")),
                         {"format \"csv\" is not supported"}));
  fs::remove(dir / "index.json");
  EXPECT_TRUE(fails_with([&] { MDSReader reader(dir); }, {"index.json", "missing"}));
  EXPECT_TRUE(fails_with([&] { MDSReader reader(dir_ / "nowhere"); }, {"nowhere", "no such"}));
}

TEST_F(MDSTest, HashMismatchIsReported) {
  const fs::path dir = copy_fixture("plain");
  std::string data = test::read_bytes(dir / "shard.00000.mds");
  data[data.size() - 1] ^= 0x40;  // inside the last sample, offsets intact
  test::write_bytes(dir / "shard.00000.mds", data);
  EXPECT_TRUE(fails_with([&] { MDSReader(dir).get(0); },
                         {"shard.00000.mds", "md5 hash mismatch", "index.json says"}));
  MDSReaderOptions options;
  options.verify_hashes = false;
  EXPECT_NO_THROW(MDSReader(dir, options).get(0));
#ifdef MICRODIT_HAVE_ZSTD
  const fs::path zdir = copy_fixture("zstd");
  std::string zip = test::read_bytes(zdir / "shard.00001.mds.zstd");
  zip[zip.size() / 2] ^= 0x01;
  test::write_bytes(zdir / "shard.00001.mds.zstd", zip);
  EXPECT_TRUE(
      fails_with([&] { MDSReader(zdir).get(5); }, {"shard.00001.mds.zstd", "sha1 hash mismatch"}));
  test::write_bytes(zdir / "shard.00002.mds.zstd", zip.substr(0, 20));
  EXPECT_TRUE(
      fails_with([&] { MDSReader(zdir, options).get(10); }, {"shard.00002.mds.zstd", "truncated"}));
#endif
}

TEST_F(MDSTest, HashesWeDoNotImplementAreSkipped) {
  const fs::path dir = copy_fixture("plain");
  std::string index = test::read_bytes(dir / "index.json");
  for (std::size_t pos = 0; (pos = index.find("\"hashes\": {\"md5\"", pos)) != std::string::npos;) {
    index.insert(pos + 11, "\"xxh3_64\": \"0123\", ");
    pos += 30;
  }
  test::write_bytes(dir / "index.json", index);
  MDSReader reader(dir);
  EXPECT_EQ(reader.unchecked_hashes(), std::vector<std::string>{"xxh3_64"});
  expect_matches_fixture(reader, "plain");
}

TEST_F(MDSTest, ImageColumnsAreReportedAndSkippable) {
  {
    MDSWriter writer(dir_ / "img", {{"caption", "str"}, {"img", "bytes"}});
    writer.write(MDSSample{{"caption", std::string("hi")}, {"img", std::string("\xff\xd8")}});
    writer.finish();
  }
  // Relabel the column as jpeg in index.json and in the shard's config (same length).
  for (const char* name : {"index.json", "shard.00000.mds"}) {
    std::string text = test::read_bytes(dir_ / "img" / name);
    const auto pos = text.find("[\"str\", \"bytes\"]");
    ASSERT_NE(pos, std::string::npos);
    text.replace(pos, 16, "[\"str\", \"jpeg\"] ");
    test::write_bytes(dir_ / "img" / name, text);
  }
  MDSReaderOptions options;
  options.verify_hashes = false;
  MDSReader reader(dir_ / "img", options);
  EXPECT_EQ(reader.get(0, {"caption"}).str("caption"), "hi");
  EXPECT_TRUE(fails_with([&] { reader.get(0); },
                         {"\"img\" (jpeg)", "image encodings are not supported (yet)"}));
}

// ----------------------------------------------------------------------- latent dataset

MDSLatentDatasetOptions tiny_options(int64_t resolution, const std::string& column) {
  MDSLatentDatasetOptions options;
  options.resolution = resolution;
  options.latents_column = column;
  options.caption_tokens = 7;
  options.caption_channels = 8;
  return options;
}

at::Tensor fp16_from_hex(const Json& description, at::IntArrayRef shape) {
  const std::string data = unhex(description.at("hex").get<std::string>());
  at::Tensor t = at::empty(shape, at::kHalf);
  std::memcpy(t.data_ptr(), data.data(), data.size());
  return t.to(at::kFloat);
}

TEST_F(MDSTest, LatentDatasetOverMergedFixture) {
  const auto& rows = expected_samples("merged");
  for (const auto& [resolution, column] :
       {std::pair<int64_t, std::string>{32, "latents_256"}, {64, "latents_512"}}) {
    MDSLatentDataset merged({fixtures() / "merged"}, tiny_options(resolution, column));
    MDSLatentDataset parts({fixtures() / "merged" / "0", fixtures() / "merged" / "1"},
                           tiny_options(resolution, column));
    ASSERT_EQ(merged.size(), 5);
    ASSERT_EQ(parts.size(), 5);
    EXPECT_EQ(merged.latent_shape(), (std::vector<int64_t>{4, resolution / 8, resolution / 8}));
    for (int64_t i = 0; i < merged.size(); ++i) {
      const Sample a = merged.get(i);
      const Sample b = parts.get(i);
      const auto side = resolution / 8;
      EXPECT_TRUE(a.latents.equal(fp16_from_hex(rows[i].at(column), {4, side, side}))) << i;
      EXPECT_TRUE(a.caption.equal(fp16_from_hex(rows[i].at("caption_latents"), {7, 8}))) << i;
      EXPECT_EQ(a.latents.scalar_type(), at::kFloat);
      EXPECT_TRUE(a.latents.equal(b.latents) && a.caption.equal(b.caption)) << i;
    }
    const Batch batch = collate(merged, {4, 0}, {0, 1});
    EXPECT_EQ(batch.latents.sizes(), (at::IntArrayRef{2, 4, resolution / 8, resolution / 8}));
    EXPECT_EQ(batch.captions.sizes(), (at::IntArrayRef{2, 1, 7, 8}));
  }
  // The official column name latents_<resolution>, with the tiny fixture's latent size.
  MDSLatentDatasetOptions sized = tiny_options(512, "");
  sized.latent_size = 8;
  MDSLatentDataset by_name({fixtures() / "merged"}, sized);
  EXPECT_EQ(by_name.latents_column(), "latents_512");
  EXPECT_TRUE(by_name.get(3).latents.equal(fp16_from_hex(rows[3].at("latents_512"), {4, 8, 8})));
  // Without latent_size the shape follows the resolution: (4, 256/8, 256/8).
  MDSLatentDatasetOptions official = tiny_options(256, "");
  EXPECT_TRUE(fails_with(
      [&] { MDSLatentDataset({fixtures() / "merged"}, official).get(0); },
      {"shard.00000.mds", "\"latents_256\" has 128 bytes, expected 8192", "fp16 [4,32,32]"}));
}

TEST_F(MDSTest, LatentDatasetReportsMissingColumnsAndWrongLengths) {
  EXPECT_TRUE(fails_with([] { MDSLatentDataset({fixtures() / "plain"}, tiny_options(512, "")); },
                         {"plain", "no column \"latents_512\"", "latents_256"}));
  MDSLatentDatasetOptions options = tiny_options(32, "latents_256");
  options.caption_column = "missing_caption";
  EXPECT_TRUE(fails_with([&] { MDSLatentDataset({fixtures() / "plain"}, options); },
                         {"no column \"missing_caption\""}));
  options = tiny_options(32, "latents_256");
  options.caption_channels = 9;
  MDSLatentDataset wrong({fixtures() / "plain"}, options);
  EXPECT_TRUE(
      fails_with([&] { wrong.get(6); }, {"plain/shard.00001.mds: sample 2 (dataset index 6)",
                                         "caption_latents", "112 bytes, expected 126", "[7,9]"}));
  options = tiny_options(32, "caption");
  EXPECT_TRUE(fails_with([&] { MDSLatentDataset({fixtures() / "plain"}, options); },
                         {"\"caption\" has encoding str"}));
  EXPECT_TRUE(fails_with<std::invalid_argument>(
      [] { MDSLatentDataset({fixtures() / "plain"}, tiny_options(30, "latents_256")); },
      {"multiple of 8"}));
  EXPECT_TRUE(fails_with<std::out_of_range>(
      [] { MDSLatentDataset({fixtures() / "plain"}, tiny_options(32, "latents_256")).get(11); },
      {"index 11"}));
}

}  // namespace
}  // namespace microdit::data
