// Tests for collate and the data layer's random streams.
#include <gtest/gtest.h>

#include "microdit/data/dataset.h"

namespace microdit::data {
namespace {

// Sample i: latents filled with i, caption filled with -i; sample `odd` has other shapes.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(int64_t odd = -1) : odd_(odd) {}
  int64_t size() const override { return 10; }
  Sample get(int64_t index) const override {
    const int64_t h = index == odd_ ? 3 : 2;
    return {at::full({4, h, h}, static_cast<double>(index)),
            at::full({5, 6}, -static_cast<double>(index))};
  }

 private:
  int64_t odd_;
};

TEST(Collate, StacksSamplesInOrder) {
  const CountingDataset dataset;
  const Batch batch = collate(dataset, {7, 2, 7}, {100, 101, 102});
  EXPECT_EQ(batch.latents.sizes(), (std::vector<int64_t>{3, 4, 2, 2}));
  EXPECT_EQ(batch.captions.sizes(), (std::vector<int64_t>{3, 1, 5, 6}));
  EXPECT_EQ(batch.indices, (std::vector<int64_t>{7, 2, 7}));
  EXPECT_EQ(batch.global_positions, (std::vector<int64_t>{100, 101, 102}));
  EXPECT_EQ(batch.latents.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(batch.latents[1], at::full({4, 2, 2}, 2.0)));
  EXPECT_TRUE(at::equal(batch.captions[0][0], at::full({5, 6}, -7.0)));
}

TEST(Collate, RejectsBadBatches) {
  const CountingDataset dataset;
  EXPECT_THROW(collate(dataset, {}, {}), std::invalid_argument);
  EXPECT_THROW(collate(dataset, {1, 2}, {0}), std::invalid_argument);
  EXPECT_THROW(collate(dataset, {1, 10}, {0, 1}), std::out_of_range);
  EXPECT_THROW(collate(dataset, {-1}, {0}), std::out_of_range);
  const CountingDataset ragged(/*odd=*/4);
  try {
    collate(ragged, {1, 4}, {0, 1});
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 4 has latents [4,3,3]"), std::string::npos)
        << e.what();
  }
}

// Reference values: SplitMix64 from seed 0 (Vigna's splitmix64.c) and FNV-1a 64 test vectors.
TEST(RandomStreams, MatchReferenceValues) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(rng.next(), 0x06c45d188009454fULL);
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
}

TEST(RandomStreams, DrawsStayInRangeAndCoverIt) {
  SplitMix64 rng(123);
  std::vector<int> hits(5, 0);
  for (int i = 0; i < 1000; ++i) {
    const int64_t v = rng.between(3, 7);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 7);
    ++hits[v - 3];
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  for (int h : hits) EXPECT_GT(h, 150);
  EXPECT_NE(mix_seed(1, 2), mix_seed(2, 1));
  EXPECT_EQ(mix_seed(1, 2), mix_seed(1, 2));
}

}  // namespace
}  // namespace microdit::data
