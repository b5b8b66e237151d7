// Tests for the torch.save reader: fixtures written by PyTorch (scripts/make_io_fixtures.py),
// hand-assembled pickles for the error paths, and the official reference weights.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "microdit/io/safetensors.h"
#include "microdit/io/torch_checkpoint.h"
#include "test_support.h"

namespace microdit::io {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = test::source_dir() / "tests" / "data" / "io";
const fs::path kReference = test::reference_dir();

using test::throws_with;

testing::AssertionResult rejects(const fs::path& path,
                                 std::initializer_list<std::string_view> pieces) {
  return throws_with([&] { load_torch_state_dict(path); }, path.string() + ": ", pieces);
}

// Same dtype, shape and values, compared bytewise so that every dtype works.
testing::AssertionResult same_tensor(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) {
    return testing::AssertionFailure() << a.scalar_type() << shape_string(a.sizes()) << " vs "
                                       << b.scalar_type() << shape_string(b.sizes());
  }
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  if (ca.nbytes() > 0 && std::memcmp(ca.const_data_ptr(), cb.const_data_ptr(), ca.nbytes()) != 0) {
    return testing::AssertionFailure() << "values differ";
  }
  return testing::AssertionSuccess();
}

// The entries "<stem>/<key>" of expected.safetensors, as key -> tensor.
TensorMap expected_for(std::string_view stem) {
  static const TensorMap all = load_safetensors(kFixtures / "expected.safetensors");
  TensorMap out;
  const std::string prefix = std::string(stem) + "/";
  for (const auto& [key, tensor] : all) {
    if (key.starts_with(prefix)) out.emplace(key.substr(prefix.size()), tensor);
  }
  return out;
}

void expect_same_maps(const TensorMap& actual, const TensorMap& expected) {
  ASSERT_FALSE(expected.empty());
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [key, tensor] : expected) {
    ASSERT_TRUE(actual.contains(key)) << key;
    EXPECT_TRUE(same_tensor(actual.at(key), tensor)) << key;
  }
}

TEST(TorchCheckpoint, LoadsAnOrderedDictStateDict) {
  std::vector<std::string> notes;
  const TensorMap tensors = load_torch_state_dict(kFixtures / "plain.pt", &notes);
  expect_same_maps(tensors, expected_for("plain"));
  EXPECT_TRUE(notes.empty());
  EXPECT_TRUE(tensors.contains("0.weight"));
  EXPECT_TRUE(tensors.contains("scale"));  // buffers are part of a state dict
}

TEST(TorchCheckpoint, UnwrapsStateDictEntryAndModulePrefix) {
  std::vector<std::string> notes;
  const TensorMap tensors = load_torch_state_dict(kFixtures / "wrapped_module.pt", &notes);
  expect_same_maps(tensors, expected_for("wrapped_module"));
  EXPECT_EQ(notes,
            (std::vector<std::string>{"using the checkpoint's 'state_dict' entry (ignoring epoch)",
                                      "stripped prefix 'module.' from all 7 keys"}));
}

TEST(TorchCheckpoint, StripsNestedPrefixesAndSkipsNonTensors) {
  std::vector<std::string> notes;
  const TensorMap tensors = load_torch_state_dict(kFixtures / "orig_mod.pt", &notes);
  expect_same_maps(tensors, expected_for("orig_mod"));
  EXPECT_EQ(notes,
            (std::vector<std::string>{"skipped non-tensor entry 'module._orig_mod.step' (int)",
                                      "stripped prefix 'module.' from all 7 keys",
                                      "stripped prefix '_orig_mod.' from all 7 keys"}));
}

TEST(TorchCheckpoint, KeepsViewsOffsetsAndSharedStorage) {
  const TensorMap t = load_torch_state_dict(kFixtures / "views.pt");
  expect_same_maps(t, expected_for("views"));
  EXPECT_EQ(t.at("transposed").strides(), (std::vector<std::int64_t>{1, 6}));
  EXPECT_EQ(t.at("row_slice").storage_offset(), 6);
  EXPECT_EQ(t.at("strided").strides(), (std::vector<std::int64_t>{6, 2}));
  EXPECT_TRUE(t.at("row_slice").is_alias_of(t.at("base")));  // one storage, read once
}

TEST(TorchCheckpoint, LoadsEveryStorageTypeAndRebuildVariant) {
  const TensorMap t = load_torch_state_dict(kFixtures / "dtypes.pt");
  expect_same_maps(t, expected_for("dtypes"));
  EXPECT_EQ(t.at("bfloat16").scalar_type(), at::kBFloat16);
  EXPECT_EQ(t.at("float16").scalar_type(), at::kHalf);
  EXPECT_EQ(t.at("uint16").scalar_type(), at::kUInt16);  // _rebuild_tensor_v3
  EXPECT_EQ(t.at("float8_e4m3fn").scalar_type(), at::kFloat8_e4m3fn);
  EXPECT_EQ(t.at("scalar").dim(), 0);
  EXPECT_EQ(t.at("empty").sizes(), (std::vector<std::int64_t>{0, 3}));
  EXPECT_TRUE(same_tensor(t.at("parameter"), t.at("float32")));  // _rebuild_parameter
}

TEST(TorchCheckpoint, RejectsArbitraryClasses) {
  EXPECT_TRUE(rejects(kFixtures / "custom_class.pt", {"unsupported global '__main__.Custom'"}));
}

TEST(TorchCheckpoint, RejectsOtherPickleProtocols) {
  EXPECT_TRUE(rejects(kFixtures / "protocol4.pt", {"pickle protocol 4 is not supported"}));
}

TEST(TorchCheckpoint, RejectsFilesThatAreNotZipArchives) {
  EXPECT_TRUE(rejects(kFixtures / "legacy.pt", {"not a torch.save zip archive"}));
  EXPECT_TRUE(rejects(kFixtures / "python_metadata.safetensors", {"not a torch.save zip archive"}));
  EXPECT_TRUE(rejects(kFixtures / "absent.pt", {"cannot open"}));
  EXPECT_TRUE(rejects(kFixtures, {"is a directory, not a file"}));
}

// ---------------------------------------------------------------------------------------------
// Hand-assembled archives: the malformed inputs PyTorch never writes.

class Pickle {
 public:
  Pickle& op(char code) {
    bytes_ += code;
    return *this;
  }
  Pickle& str(std::string_view text) {
    const auto n = static_cast<std::uint32_t>(text.size());
    bytes_ += 'X';
    bytes_.append(reinterpret_cast<const char*>(&n), 4);
    bytes_ += text;
    return *this;
  }
  Pickle& global(std::string_view module, std::string_view name) {
    bytes_ += 'c' + std::string(module) + '\n' + std::string(name) + '\n';
    return *this;
  }
  Pickle& int1(std::uint8_t value) {
    bytes_ += 'K';
    bytes_ += static_cast<char>(value);
    return *this;
  }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, (size,), (stride,),
  // False, {}): a 1-D float tensor.
  Pickle& tensor(std::string_view key, int numel, int offset, int size, int stride) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", "FloatStorage").str(key).str("cpu").int1(numel);
    op('t').op('Q').int1(offset).int1(size).op('\x85').int1(stride).op('\x85');
    return op('\x89').op('}').op('t').op('R');
  }
  std::string bytes() const { return "\x80\x02" + bytes_ + "."; }

 private:
  std::string bytes_;
};

class TorchCheckpointArchive : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("microdit-checkpoint-" + std::to_string(::getpid()) + "-" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    test::remove_tree(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { test::remove_tree(dir_); }

  // A zip archive with data.pkl = `pickle` and a data/0 record of `floats` floats.
  fs::path archive(const std::string& pickle, int floats = 4) {
    const fs::path path = dir_ / "archive.pt";
    caffe2::serialize::PyTorchStreamWriter writer(path.string());
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    const std::vector<float> storage(static_cast<std::size_t>(floats), 1.5f);
    writer.writeRecord("data/0", storage.data(), storage.size() * sizeof(float));
    writer.writeEndOfFile();
    return path;
  }

  fs::path dir_;
};

TEST_F(TorchCheckpointArchive, ReadsAHandWrittenDict) {
  const std::string pickle =
      Pickle().op('}').op('(').str("dit.w").tensor("0", 4, 1, 3, 1).op('u').bytes();
  std::vector<std::string> notes;
  const TensorMap t = load_torch_state_dict(archive(pickle), &notes);
  ASSERT_TRUE(t.contains("w"));
  EXPECT_TRUE(same_tensor(t.at("w"), at::full({3}, 1.5f)));
  EXPECT_EQ(notes, std::vector<std::string>{"stripped prefix 'dit.' from all 1 keys"});
}

TEST_F(TorchCheckpointArchive, KeepsPrefixesNotSharedByAllKeys) {
  const std::string pickle = Pickle()
                                 .op('}')
                                 .op('(')
                                 .str("dit.w")
                                 .tensor("0", 4, 0, 1, 1)
                                 .str("vae.w")
                                 .tensor("0", 4, 1, 1, 1)
                                 .op('u')
                                 .bytes();
  std::vector<std::string> notes;
  const TensorMap t = load_torch_state_dict(archive(pickle), &notes);
  EXPECT_TRUE(t.contains("dit.w"));
  EXPECT_TRUE(t.contains("vae.w"));
  EXPECT_TRUE(notes.empty());
}

TEST_F(TorchCheckpointArchive, RejectsViewsOutsideTheStorage) {
  const std::string pickle = Pickle().op('}').str("w").tensor("0", 4, 2, 3, 1).op('s').bytes();
  EXPECT_TRUE(rejects(archive(pickle), {"reaches past the end of a storage with 4 elements"}));
}

TEST_F(TorchCheckpointArchive, RejectsStorageOfTheWrongSize) {
  const std::string pickle = Pickle().op('}').str("w").tensor("0", 8, 0, 8, 1).op('s').bytes();
  EXPECT_TRUE(rejects(archive(pickle, 4), {"record data/0 holds 16 bytes, not 8 x Float"}));
}

TEST_F(TorchCheckpointArchive, RejectsUnsupportedOpcodes) {
  const std::string pickle = Pickle().op('}').str("w").op('C').op('\x01').op('x').op('s').bytes();
  EXPECT_TRUE(rejects(archive(pickle),
                      {"data.pkl byte 9: unsupported pickle opcode 0x43 (SHORT_BINBYTES)"}));
}

TEST_F(TorchCheckpointArchive, RejectsMalformedPickles) {
  EXPECT_TRUE(rejects(archive("}."), {"not a protocol-2 pickle"}));
  EXPECT_TRUE(rejects(archive(Pickle().op(']').bytes()), {"expected a dict of tensors, got list"}));
  EXPECT_TRUE(
      rejects(archive(Pickle().op('h').op('\x07').bytes()), {"memo entry 7 was never stored"}));
  EXPECT_TRUE(rejects(archive(Pickle().op('s').bytes()), {"pop from an empty stack"}));
  EXPECT_TRUE(rejects(archive(std::string("\x80\x02}X\xff\x00\x00\x00", 8) + "ab"),
                      {"ends in the middle of an opcode"}));
  EXPECT_TRUE(
      rejects(archive(Pickle().op('}').str("n").int1(3).op('s').bytes()), {"no tensors found"}));
  EXPECT_TRUE(rejects(archive(Pickle().global("os", "system").bytes()),
                      {"unsupported global 'os.system'"}));
}

// A view whose extent overflows int64 (size 2^62, stride 4) is refused, not wrapped around.
TEST_F(TorchCheckpointArchive, RejectsAViewWhoseExtentOverflows) {
  Pickle pickle;
  pickle.op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
  pickle.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").int1(4);
  const std::int64_t huge = std::int64_t{1} << 62;
  std::string size_op = "\x8a\x08";  // LONG1 of 8 bytes
  size_op.append(reinterpret_cast<const char*>(&huge), 8);
  pickle.op('t').op('Q').int1(0).op('(');
  for (char c : size_op) pickle.op(c);
  pickle.op('t').int1(4).op('\x85').op('\x89').op('}').op('t').op('R').op('s');
  EXPECT_TRUE(rejects(archive(pickle.bytes()), {"reaches past the end of a storage"}));
}

// A storage that claims more elements than its record holds is refused before it is allocated.
TEST_F(TorchCheckpointArchive, RejectsAStorageClaimingMoreThanItsRecord) {
  Pickle pickle;
  pickle.op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
  pickle.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu");
  const std::int64_t huge = std::int64_t{1} << 60;
  std::string numel = "\x8a\x08";
  numel.append(reinterpret_cast<const char*>(&huge), 8);
  for (char c : numel) pickle.op(c);
  pickle.op('t').op('Q').int1(0).int1(1).op('\x85').int1(1).op('\x85').op('\x89').op('}').op('t');
  pickle.op('R').op('s');
  EXPECT_TRUE(rejects(archive(pickle.bytes()), {"record data/0 holds 16 bytes, not"}));
}

// n tuples, each the only item of the next: MARK x n, EMPTY_TUPLE, TUPLE x n.
std::string nested_tuples(int n) {
  Pickle pickle;
  for (int i = 0; i < n; ++i) pickle.op('(');
  pickle.op(')');
  for (int i = 0; i < n; ++i) pickle.op('t');
  return pickle.bytes();
}

TEST_F(TorchCheckpointArchive, RejectsNestingDeeperThanAThousand) {
  EXPECT_TRUE(rejects(archive(nested_tuples(1000)), {"expected a dict of tensors, got tuple"}));
  EXPECT_TRUE(rejects(archive(nested_tuples(1001)), {"nest more than 1000 levels deep"}));
  // A million levels (the crash this limit prevents: destroying them recursively).
  EXPECT_TRUE(rejects(archive(nested_tuples(1000000)), {"nest more than 1000 levels deep"}));
}

// A chain of lists built through the memo (each appended to the one before), and a list that
// contains itself: both refused, and neither crashes or leaks when the reader gives up.
TEST_F(TorchCheckpointArchive, RejectsDeepAndCyclicListsBuiltThroughTheMemo) {
  Pickle chain;
  chain.op(']').op('q').op('\0');
  for (int i = 0; i < 200000; ++i) {
    chain.op('h').op('\0').op(']').op('q').op('\0').op('a').op('0');
  }
  EXPECT_TRUE(rejects(archive(chain.bytes()), {"nest more than 1000 levels deep"}));
  const std::string cycle = Pickle().op(']').op('q').op('\0').op('h').op('\0').op('a').bytes();
  EXPECT_TRUE(rejects(archive(cycle), {"a container contains itself"}));
}

TEST_F(TorchCheckpointArchive, RejectsACorruptZip) {
  std::ifstream in(kFixtures / "plain.pt", std::ios::binary);
  std::string head(200, '\0');
  in.read(head.data(), 200);
  const fs::path path = dir_ / "truncated.pt";
  std::ofstream(path, std::ios::binary).write(head.data(), 200);
  EXPECT_TRUE(rejects(path, {}));
}

// ---------------------------------------------------------------------------------------------
// The official implementation's weights, saved both ways by the reference generator.

TEST(TorchCheckpointReference, MatchesTheSafetensorsCopy) {
  std::vector<std::string> notes;
  const TensorMap from_pt = load_torch_state_dict(kReference / "weights.pt", &notes);
  const TensorMap from_safetensors = load_safetensors(kReference / "weights.safetensors");
  EXPECT_TRUE(notes.empty());
  EXPECT_GT(from_pt.size(), 100u);
  expect_same_maps(from_pt, from_safetensors);
  EXPECT_TRUE(from_pt.contains("pos_embed"));
  EXPECT_TRUE(from_pt.contains("blocks.0.attn.qkv.weight"));
}

}  // namespace
}  // namespace microdit::io
