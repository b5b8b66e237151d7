// Tests for the safetensors reader/writer and the atomic file writer, including byte-exact
// agreement with files written by the Python `safetensors` library (scripts/make_io_fixtures.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "microdit/io/atomic_file.h"
#include "microdit/io/safetensors.h"
#include "test_one_line.h"
#include "test_support.h"

namespace microdit::io {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = test::source_dir() / "tests" / "data" / "io";

using test::throws_with;

// Same dtype, shape and bytes (NaN-safe, works for every dtype).
testing::AssertionResult same_tensor(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) {
    return testing::AssertionFailure() << a.scalar_type() << " vs " << b.scalar_type();
  }
  if (a.sizes() != b.sizes()) {
    return testing::AssertionFailure()
           << shape_string(a.sizes()) << " vs " << shape_string(b.sizes());
  }
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  if (ca.nbytes() > 0 && std::memcmp(ca.const_data_ptr(), cb.const_data_ptr(), ca.nbytes()) != 0) {
    return testing::AssertionFailure() << "bytes differ";
  }
  return testing::AssertionSuccess();
}

std::string u64_le(std::uint64_t value) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &value, 8);
  return out;
}

// [u64 N][header][data] with no checks: the way to build malformed files.
std::string raw_file(std::string_view header, std::size_t data_bytes) {
  return u64_le(header.size()) + std::string(header) + std::string(data_bytes, '\x01');
}

class Safetensors : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("microdit-safetensors-" + std::to_string(::getpid()) + "-" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    test::remove_tree(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { test::remove_tree(dir_); }

  fs::path file(std::string_view name) const { return dir_ / name; }

  // Writes `bytes`, loads them, and checks the error names the file and every piece.
  testing::AssertionResult rejects(std::string_view bytes,
                                   std::initializer_list<std::string_view> pieces) {
    const fs::path path = file("bad.safetensors");
    test::write_bytes(path, bytes);
    return throws_with([&] { load_safetensors(path); }, path.string() + ": ", pieces);
  }

  fs::path dir_;
};

TensorMap every_dtype() {
  at::manual_seed(3);
  const at::Tensor values = at::randn({2, 3});
  TensorMap tensors;
  for (at::ScalarType type :
       {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kComplexFloat, at::kFloat8_e4m3fn,
        at::kFloat8_e5m2, at::kFloat8_e4m3fnuz, at::kFloat8_e5m2fnuz, at::kFloat8_e8m0fnu}) {
    tensors.emplace(c10::toString(type), values.abs().to(type));
  }
  const at::Tensor ints = at::randint(0, 120, {3, 2}, at::kLong);
  for (at::ScalarType type : {at::kLong, at::kInt, at::kShort, at::kChar, at::kByte, at::kUInt16,
                              at::kUInt32, at::kUInt64, at::kBool}) {
    tensors.emplace(c10::toString(type), ints.to(type));
  }
  tensors.emplace("scalar", at::scalar_tensor(2.5));
  tensors.emplace("empty", at::zeros({0, 4}, at::kHalf));
  tensors.emplace("transposed", values.t());  // non-contiguous
  tensors.emplace("strided_slice", at::arange(10, at::kInt).slice(0, 1, 9, 3));
  return tensors;
}

TEST_F(Safetensors, RoundTripsEveryDtype) {
  const TensorMap tensors = every_dtype();
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"step", "12"}};
  save_safetensors(file("all.safetensors"), tensors, metadata);
  std::map<std::string, std::string> loaded_metadata;
  const TensorMap loaded = load_safetensors(file("all.safetensors"), &loaded_metadata);
  EXPECT_EQ(loaded_metadata, metadata);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    ASSERT_TRUE(loaded.contains(name)) << name;
    EXPECT_TRUE(same_tensor(loaded.at(name), tensor)) << name;
  }
  EXPECT_EQ(loaded.at("scalar").dim(), 0);
  EXPECT_EQ(loaded.at("empty").sizes(), (std::vector<std::int64_t>{0, 4}));
}

TEST_F(Safetensors, WritesTheReferenceLayout) {
  const TensorMap tensors{{"b", at::zeros({2}, at::kHalf)},
                          {"a", at::zeros({3})},
                          {"c", at::zeros({1}, at::kDouble)},
                          {"z", at::scalar_tensor(true, at::kBool)},
                          {"e", at::zeros({0}, at::kChar)}};
  save_safetensors(file("layout.safetensors"), tensors, {{"format", "pt"}});
  const std::string bytes = test::read_bytes(file("layout.safetensors"));
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  const std::string json = R"({"__metadata__":{"format":"pt"},)"
                           R"("c":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
                           R"("a":{"dtype":"F32","shape":[3],"data_offsets":[8,20]},)"
                           R"("b":{"dtype":"F16","shape":[2],"data_offsets":[20,24]},)"
                           R"("e":{"dtype":"I8","shape":[0],"data_offsets":[24,24]},)"
                           R"("z":{"dtype":"BOOL","shape":[],"data_offsets":[24,25]}})";
  const std::size_t padded = (json.size() + 7) / 8 * 8;
  ASSERT_EQ(header_size, padded);
  EXPECT_EQ(bytes.substr(8, header_size), json + std::string(padded - json.size(), ' '));
  EXPECT_EQ(bytes.size(), 8 + padded + 25);
}

TEST_F(Safetensors, EmptyMetadataWritesNoMetadataEntry) {
  save_safetensors(file("plain.safetensors"), {{"x", at::ones({1})}});
  EXPECT_EQ(test::read_bytes(file("plain.safetensors")).substr(8, 9), R"({"x":{"dt)");
  std::map<std::string, std::string> metadata{{"stale", "entry"}};
  load_safetensors(file("plain.safetensors"), &metadata);
  EXPECT_TRUE(metadata.empty());
}

TEST_F(Safetensors, MatchesPythonWriterByteForByte) {
  const fs::path python = kFixtures / "python_dtypes.safetensors";
  std::map<std::string, std::string> metadata;
  const TensorMap tensors = load_safetensors(python, &metadata);
  save_safetensors(file("ours.safetensors"), tensors, metadata);
  EXPECT_EQ(test::read_bytes(file("ours.safetensors")), test::read_bytes(python));
}

TEST(SafetensorsFixture, LoadsValuesWrittenByPython) {
  std::map<std::string, std::string> metadata;
  const TensorMap t = load_safetensors(kFixtures / "python_dtypes.safetensors", &metadata);
  EXPECT_EQ(metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(t.size(), 22u);
  const at::Tensor f32 = t.at("f32");
  EXPECT_TRUE(same_tensor(t.at("f16"), f32.to(at::kHalf)));
  EXPECT_TRUE(same_tensor(t.at("bf16"), f32.to(at::kBFloat16)));
  EXPECT_TRUE(same_tensor(t.at("f8_e4m3"), f32.to(at::kFloat8_e4m3fn)));
  EXPECT_TRUE(same_tensor(t.at("f8_e5m2"), f32.to(at::kFloat8_e5m2)));
  EXPECT_TRUE(same_tensor(t.at("c64"), at::complex(f32, -f32)));
  EXPECT_TRUE(
      same_tensor(t.at("i64"), at::tensor(std::vector<std::int64_t>{-(1LL << 40), 0, 1LL << 40})));
  EXPECT_TRUE(same_tensor(t.at("u8"), at::tensor({0, 255, 7}, at::kByte)));
  EXPECT_TRUE(same_tensor(t.at("u64"),
                          at::tensor(std::vector<std::int64_t>{1LL << 62, 3}).to(at::kUInt64)));
  EXPECT_TRUE(same_tensor(t.at("bool"), at::tensor({1, 0, 1}).to(at::kBool)));
  EXPECT_TRUE(same_tensor(t.at("f32_scalar"), at::scalar_tensor(1.25f)));
  EXPECT_EQ(t.at("f32_empty").sizes(), (std::vector<std::int64_t>{0, 4}));
}

TEST(SafetensorsFixture, ReadsEscapedAndNonAsciiMetadata) {
  std::map<std::string, std::string> metadata;
  load_safetensors(kFixtures / "python_metadata.safetensors", &metadata);
  const std::map<std::string, std::string> expected{{"format", "pt"},
                                                    {"quote\"and\\slash", "line\nbreak"},
                                                    {"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac"}};
  EXPECT_EQ(metadata, expected);
}

TEST_F(Safetensors, AcceptsWhitespaceAndUnknownFields) {
  const std::string header = R"( {"a":{"dtype":"F32","shape":[],"data_offsets":[0,4],"note":1},)"
                             R"("e":{"dtype":"I64","shape":[2,0],"data_offsets":[4,4]}} )";
  test::write_bytes(file("ok.safetensors"), raw_file(header, 4));
  const TensorMap t = load_safetensors(file("ok.safetensors"));
  EXPECT_EQ(t.at("a").dim(), 0);
  EXPECT_EQ(t.at("e").numel(), 0);
}

TEST_F(Safetensors, RejectsBadLengths) {
  EXPECT_TRUE(rejects("abc", {"file is 3 bytes, too short for the 8-byte header length"}));
  EXPECT_TRUE(
      rejects(u64_le(100) + "{}", {"header length 100 runs past the end of the file (10 bytes)"}));
  EXPECT_TRUE(rejects(u64_le(100'000'001) + "{}", {"header length 100000001 exceeds the limit"}));
}

// A header may claim any size; the file's own size bounds what is read or allocated.
TEST_F(Safetensors, RefusesAHeaderClaimingA2To60ByteTensor) {
  const std::string huge = std::to_string(std::uint64_t{1} << 60);
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[)" + huge + R"(],"data_offsets":[0,)" + huge + "]}}";
  const fs::path path = file("huge.safetensors");
  test::write_bytes(path, raw_file(header, 8));
  EXPECT_TRUE(test::throws_one_line([&] { load_safetensors(path); }, path.string() + ": ",
                                    {"file is truncated", "describes"}));
  EXPECT_TRUE(test::throws_one_line(
      [&] { parse_safetensors(raw_file(header, 8), "in-memory.safetensors"); },
      "in-memory.safetensors: ", {"file is truncated"}));
}

TEST_F(Safetensors, RejectsTruncatedAndOverlongFiles) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::size_t full = 8 + header.size() + 8;
  EXPECT_TRUE(
      rejects(raw_file(header, 5), {"file is truncated", "describes " + std::to_string(full),
                                    "file has " + std::to_string(full - 3)}));
  EXPECT_TRUE(rejects(raw_file(header, 9), {"1 trailing bytes after the tensor data",
                                            "expected " + std::to_string(full)}));
}

TEST_F(Safetensors, RejectsTruncatedSavedFile) {
  save_safetensors(file("full.safetensors"), every_dtype());
  const std::string bytes = test::read_bytes(file("full.safetensors"));
  EXPECT_TRUE(rejects(bytes.substr(0, bytes.size() - 1),
                      {"file is truncated", "file has " + std::to_string(bytes.size() - 1)}));
}

TEST_F(Safetensors, RejectsBadOffsets) {
  const auto two = [](const std::string& a, const std::string& b) {
    return raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":)" + a +
                        R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":)" + b + "}}",
                    16);
  };
  EXPECT_TRUE(rejects(two("[0,8]", "[4,12]"),
                      {"tensor b has data_offsets [4,12], expected it to start at byte 8",
                       "contiguous from 0 without gaps or overlaps"}));
  EXPECT_TRUE(rejects(two("[0,8]", "[12,20]"),
                      {"tensor b has data_offsets [12,20], expected it to start at byte 8"}));
  EXPECT_TRUE(rejects(two("[8,16]", "[16,24]"),
                      {"tensor a has data_offsets [8,16], expected it to start at byte 0"}));
  EXPECT_TRUE(rejects(two("[0,8]", "[8,4]"), {"tensor b has data_offsets [8,4]"}));
  EXPECT_TRUE(
      rejects(two("[0,8]", "[8,8,9]"), {"tensor b: data_offsets must be [BEGIN, END], got 3"}));
}

TEST_F(Safetensors, RejectsWrongByteCount) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})";
  EXPECT_TRUE(
      rejects(raw_file(header, 20),
              {"tensor a: data_offsets [0,20] span 20 bytes, but F32 [2,3] needs 24 bytes"}));
}

TEST_F(Safetensors, RejectsBadHeaders) {
  const std::string entry = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  const std::string dup = R"({"a":)" + entry + R"(,"a":)" + entry + "}";
  EXPECT_TRUE(rejects(raw_file(dup, 1), {"header: invalid JSON: duplicate object key \"a\""}));
  EXPECT_TRUE(rejects(raw_file("[]", 0), {"header is a JSON array, expected an object"}));
  EXPECT_TRUE(rejects(raw_file("{\"\xff\":1}", 0),
                      {"header: invalid JSON at byte 2: ", "ill-formed UTF-8"}));
  EXPECT_TRUE(rejects(raw_file(R"({"a":1} x)", 0),
                      {"header: invalid JSON at byte 8: ", "expected end of input"}));
  EXPECT_TRUE(rejects(raw_file(R"({"__metadata__":{"k":1}})", 0),
                      {"__metadata__ entry \"k\" is a JSON integer, expected a string"}));
  EXPECT_TRUE(rejects(raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                      {"tensor a: shape must be an array of non-negative integers, got [-1]"}));
  EXPECT_TRUE(rejects(raw_file(R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4),
                      {"shape must be an array of non-negative integers"}));
  EXPECT_TRUE(rejects(raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4),
                      {"tensor a: missing field \"shape\""}));
  EXPECT_TRUE(rejects(raw_file(R"({"a":[1]})", 0), {"tensor a: entry is a JSON array"}));
}

TEST_F(Safetensors, RejectsUnknownAndUnsupportedDtypes) {
  EXPECT_TRUE(rejects(raw_file(R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16),
                      {"tensor w: unknown dtype \"F128\""}));
  EXPECT_TRUE(rejects(raw_file(R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1),
                      {"unsupported dtype F4 for tensor w"}));
  EXPECT_TRUE(rejects(raw_file(R"({"w":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}})", 3),
                      {"unsupported dtype F6_E2M3 for tensor w"}));
}

TEST_F(Safetensors, MissingFileNamesThePath) {
  const fs::path path = file("absent.safetensors");
  EXPECT_TRUE(throws_with([&] { load_safetensors(path); }, path.string() + ": ", {"cannot open"}));
  // A folder opens as a stream; it is named as what it is.
  EXPECT_TRUE(throws_with([&] { load_safetensors(dir_); }, dir_.string() + ": ",
                          {"is a directory, not a file"}));
}

TEST_F(Safetensors, SaveRejectsUnwritableTensors) {
  const fs::path path = file("bad.safetensors");
  const std::string prefix = path.string() + ": ";
  EXPECT_TRUE(throws_with(
      [&] {
        save_safetensors(path, {{"z", at::zeros({2}, at::kComplexDouble)}});
      },
      prefix, {"tensor z: dtype ComplexDouble has no safetensors code"}));
  EXPECT_TRUE(throws_with(
      [&] {
        save_safetensors(path, {{"u", at::Tensor()}});
      },
      prefix, {"tensor u is undefined"}));
  EXPECT_TRUE(throws_with(
      [&] {
        save_safetensors(path, {{"__metadata__", at::zeros({1})}});
      },
      prefix, {"\"__metadata__\" is reserved"}));
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(Safetensors, FailedSaveKeepsTheOldFile) {
  const fs::path path = file("weights.safetensors");
  save_safetensors(path, {{"x", at::ones({3})}});
  const std::string before = test::read_bytes(path);
  EXPECT_THROW(save_safetensors(path, {{"x", at::zeros({3}, at::kComplexDouble)}}),
               std::runtime_error);
  EXPECT_EQ(test::read_bytes(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(Safetensors, SaveReplacesAnExistingFile) {
  const fs::path path = file("weights.safetensors");
  save_safetensors(path, {{"x", at::ones({3})}});
  save_safetensors(path, {{"y", at::zeros({2}, at::kLong)}});
  const TensorMap loaded = load_safetensors(path);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(same_tensor(loaded.at("y"), at::zeros({2}, at::kLong)));
}

TEST_F(Safetensors, SavesCudaTensors_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor values = at::randn({3, 4});
  save_safetensors(file("cuda.safetensors"), {{"w", values.to(at::kCUDA).t()}});
  const TensorMap loaded = load_safetensors(file("cuda.safetensors"));
  EXPECT_TRUE(loaded.at("w").device().is_cpu());
  EXPECT_TRUE(same_tensor(loaded.at("w"), values.t()));
}

TEST_F(Safetensors, AtomicWriteRemovesTheTemporaryOnError) {
  const fs::path path = file("state.bin");
  write_file_atomically(path, [](std::ostream& out) { out << "old"; });
  const auto fail_midway = [](std::ostream& out) {
    out << "partial";
    throw std::runtime_error("writer gave up");
  };
  EXPECT_TRUE(throws_with([&] { write_file_atomically(path, fail_midway); }, "writer gave up", {}));
  EXPECT_EQ(test::read_bytes(path), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(Safetensors, AtomicWriteReportsAMissingDirectory) {
  const fs::path path = file("no-such-dir") / "state.bin";
  EXPECT_TRUE(throws_with([&] { write_file_atomically(path, [](std::ostream& out) { out << 1; }); },
                          (file("no-such-dir") / "state.bin.tmp.").string(),
                          {"cannot create temporary file"}));
}

}  // namespace
}  // namespace microdit::io
