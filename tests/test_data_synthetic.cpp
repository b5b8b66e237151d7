// data/synthetic: the model's shapes, a pool of distinct samples fixed by the seed, and copies
// (a caller writing into a sample leaves the pool as it was).
#include <gtest/gtest.h>

#include "microdit/data/synthetic.h"

namespace microdit::data {
namespace {

SyntheticOptions small(uint64_t seed) {
  SyntheticOptions o;
  o.num_samples = 6;
  o.latent_channels = 4;
  o.latent_size = 8;
  o.caption_tokens = 5;
  o.caption_channels = 12;
  o.seed = seed;
  return o;
}

TEST(SyntheticLatents, SamplesHaveTheModelsShapes) {
  const SyntheticLatents data(small(0));
  EXPECT_EQ(data.size(), 6);
  const auto s = data.get(5);
  EXPECT_EQ(s.latents.sizes(), (std::vector<int64_t>{4, 8, 8}));
  EXPECT_EQ(s.caption.sizes(), (std::vector<int64_t>{5, 12}));
  EXPECT_EQ(s.latents.scalar_type(), at::kFloat);
  EXPECT_EQ(s.caption.scalar_type(), at::kFloat);
  EXPECT_THROW(data.get(6), std::out_of_range);
  EXPECT_THROW(data.get(-1), std::out_of_range);
}

TEST(SyntheticLatents, TheSeedFixesThePoolOfDistinctSamples) {
  const SyntheticLatents a(small(3)), b(small(3)), other(small(4));
  for (int64_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::equal(a.get(i).latents, b.get(i).latents)) << i;
    EXPECT_TRUE(at::equal(a.get(i).caption, b.get(i).caption)) << i;
    EXPECT_FALSE(at::equal(a.get(i).latents, other.get(i).latents)) << i;
  }
  EXPECT_FALSE(at::equal(a.get(0).latents, a.get(1).latents));
  EXPECT_FALSE(at::equal(a.get(0).caption, a.get(1).caption));
  // Standard normal: the pool's spread is near 1.
  EXPECT_NEAR(a.get(2).caption.std().item<double>(), 1.0, 0.5);
}

TEST(SyntheticLatents, GetReturnsCopies) {
  const SyntheticLatents data(small(0));
  auto s = data.get(2);
  const auto kept = s.latents.clone();
  s.latents.zero_();
  s.caption.zero_();
  EXPECT_TRUE(at::equal(data.get(2).latents, kept));
  EXPECT_FALSE(at::equal(data.get(2).caption, s.caption));
}

TEST(SyntheticLatents, NonPositiveSizesAreRefused) {
  auto o = small(0);
  o.num_samples = 0;
  EXPECT_THROW(SyntheticLatents{o}, std::invalid_argument);
}

}  // namespace
}  // namespace microdit::data
