// Tests for the dataset of precomputed latents stored as safetensors shards.
#include <gtest/gtest.h>

#include "test_support.h"
#include <unistd.h>

#include <fstream>

#include "microdit/data/safetensors_shards.h"
#include "microdit/io/safetensors.h"

namespace microdit::data {
namespace {

namespace fs = std::filesystem;

class SafetensorsShardsTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("microdit-shards-" + std::to_string(::getpid()) + "-" + info->name());
    test::remove_tree(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { test::remove_tree(dir_); }

  // A shard of n samples whose values encode (first + sample index).
  void write(const std::string& name, int64_t first, int64_t n, at::ScalarType dtype = at::kFloat,
             bool caption_4d = false, std::vector<int64_t> latent_shape = {4, 2, 2}) {
    std::vector<int64_t> ls = {n};
    ls.insert(ls.end(), latent_shape.begin(), latent_shape.end());
    const auto ids = at::arange(first, first + n, at::kFloat);
    auto latents = ids.view({n, 1, 1, 1}).expand(ls).to(dtype);
    auto captions = (-ids).view({n, 1, 1}).expand({n, 3, 5}).to(dtype);
    if (caption_4d) captions = captions.unsqueeze(1);
    io::save_safetensors(dir_ / name, {{"latents", latents}, {"caption_latents", captions}});
  }

  // Passes when constructing the dataset throws std::runtime_error mentioning every piece.
  testing::AssertionResult fails_with(std::initializer_list<std::string> pieces,
                                      const SafetensorsShardsOptions& options = {}) {
    try {
      SafetensorsShards dataset(dir_, options);
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      for (const auto& piece : pieces) {
        if (message.find(piece) == std::string::npos) {
          return testing::AssertionFailure() << "\"" << message << "\" lacks \"" << piece << "\"";
        }
      }
      return testing::AssertionSuccess();
    }
    return testing::AssertionFailure() << "no std::runtime_error";
  }

  fs::path dir_;
};

TEST_F(SafetensorsShardsTest, ReadsShardsInNameOrder) {
  write("b.safetensors", 3, 4, at::kBFloat16, /*caption_4d=*/true);
  write("a.safetensors", 0, 3, at::kHalf);
  write("c.safetensors", 7, 0);  // an empty shard is fine
  write("d.safetensors", 7, 2, at::kDouble);
  std::ofstream(dir_ / "notes.txt") << "not a shard";
  const SafetensorsShards dataset(dir_);
  EXPECT_EQ(dataset.size(), 9);
  EXPECT_EQ(dataset.shard_paths().size(), 4u);
  EXPECT_EQ(dataset.shard_paths().front().filename(), "a.safetensors");
  EXPECT_EQ(dataset.latent_shape(), (std::vector<int64_t>{4, 2, 2}));
  EXPECT_EQ(dataset.caption_shape(), (std::vector<int64_t>{3, 5}));
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const Sample sample = dataset.get(i);
    EXPECT_EQ(sample.latents.scalar_type(), at::kFloat);
    EXPECT_EQ(sample.caption.scalar_type(), at::kFloat);
    EXPECT_EQ(sample.caption.sizes(), (std::vector<int64_t>{3, 5}));
    EXPECT_TRUE(at::equal(sample.latents, at::full({4, 2, 2}, static_cast<double>(i)))) << i;
    EXPECT_TRUE(at::equal(sample.caption, at::full({3, 5}, -static_cast<double>(i)))) << i;
  }
  EXPECT_THROW(dataset.get(9), std::out_of_range);
  // get() hands out copies.
  dataset.get(0).latents.fill_(5);
  EXPECT_TRUE(at::equal(dataset.get(0).latents, at::zeros({4, 2, 2})));
}

TEST_F(SafetensorsShardsTest, UsesConfiguredKeys) {
  io::save_safetensors(dir_ / "x.safetensors",
                       {{"x", at::ones({2, 4, 2, 2})}, {"y", at::ones({2, 3, 5})}});
  SafetensorsShardsOptions options;
  options.latents_key = "x";
  options.caption_key = "y";
  EXPECT_EQ(SafetensorsShards(dir_, options).size(), 2);
  EXPECT_TRUE(fails_with({"x.safetensors", "no tensor \"latents\"", "x, y"}));
}

TEST_F(SafetensorsShardsTest, RejectsMissingDirectoryAndNoShards) {
  EXPECT_TRUE(fails_with({dir_.string(), "no *.safetensors shards"}));
  test::remove_tree(dir_);
  EXPECT_TRUE(fails_with({dir_.string(), "no such dataset directory"}));
  fs::create_directories(dir_);
  write("a.safetensors", 0, 0);
  EXPECT_TRUE(fails_with({dir_.string(), "no samples"}));
}

TEST_F(SafetensorsShardsTest, RejectsShardMissingAKey) {
  write("a.safetensors", 0, 2);
  io::save_safetensors(dir_ / "b.safetensors", {{"latents", at::ones({2, 4, 2, 2})}});
  EXPECT_TRUE(fails_with({"b.safetensors", "no tensor \"caption_latents\"", "latents"}));
}

TEST_F(SafetensorsShardsTest, RejectsMismatchedSampleCounts) {
  io::save_safetensors(dir_ / "a.safetensors", {{"latents", at::ones({3, 4, 2, 2})},
                                                {"caption_latents", at::ones({2, 3, 5})}});
  EXPECT_TRUE(fails_with({"a.safetensors", "3 samples", "has 2"}));
}

TEST_F(SafetensorsShardsTest, RejectsInconsistentShapesAcrossShards) {
  write("a.safetensors", 0, 2);
  write("b.safetensors", 2, 2, at::kFloat, false, {4, 3, 3});
  EXPECT_TRUE(fails_with({"b.safetensors", "\"latents\"", "[4,3,3]", "a.safetensors", "[4,2,2]"}));
}

TEST_F(SafetensorsShardsTest, RejectsWrongRanksAndDtypes) {
  io::save_safetensors(dir_ / "a.safetensors", {{"latents", at::ones({2, 4, 2})},
                                                {"caption_latents", at::ones({2, 3, 5})}});
  EXPECT_TRUE(fails_with({"a.safetensors", "[2,4,2]", "(N,C,H,W)"}));
  io::save_safetensors(dir_ / "a.safetensors", {{"latents", at::ones({2, 4, 2, 2})},
                                                {"caption_latents", at::ones({2, 2, 3, 5})}});
  EXPECT_TRUE(fails_with({"a.safetensors", "[2,2,3,5]", "(N,1,L,Cy)"}));
  io::save_safetensors(dir_ / "a.safetensors", {{"latents", at::ones({2, 4, 2, 2}, at::kInt)},
                                                {"caption_latents", at::ones({2, 3, 5})}});
  EXPECT_TRUE(fails_with({"a.safetensors", "\"latents\"", "Int", "float dtype"}));
}

}  // namespace
}  // namespace microdit::data
