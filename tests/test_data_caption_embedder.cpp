// Tests for the built-in caption embedder.
#include <gtest/gtest.h>

#include "microdit/data/caption_embedder.h"

namespace microdit::data {
namespace {

TEST(CaptionEmbedder, IsDeterministicAndCaseInsensitive) {
  const CaptionEmbedder a(8, 32), b(8, 32);
  const auto e = a.embed("a red square on a blue background");
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(e.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(e, b.embed("a red square on a blue background")));
  EXPECT_TRUE(at::equal(e, a.embed("  A RED\tsquare on a Blue   background ")));
}

// Values from an independent Python implementation (FNV-1a seed -> SplitMix64 -> uniform
// [-1,1) components -> unit norm, plus the position vector): the embedding is bit-stable.
TEST(CaptionEmbedder, MatchesPinnedValues) {
  const auto e = CaptionEmbedder(4, 8).embed("A Red circle");
  const float expected[3][4] = {
      {-0.6294088959693909f, 0.6284315586090088f, -0.08418858051300049f, 0.29154646396636963f},
      {0.6739609837532043f, 0.21344992518424988f, 0.11914795637130737f, -0.6830648183822632f},
      {0.1413915753364563f, 0.11311352252960205f, -0.20881620049476624f, 0.3120861053466797f}};
  for (int t = 0; t < 3; ++t) {
    for (int c = 0; c < 4; ++c) EXPECT_EQ(e[t][c].item<float>(), expected[t][c]) << t << "," << c;
  }
  EXPECT_TRUE(at::equal(e[3], at::zeros({8})));
}

TEST(CaptionEmbedder, WordOrderMatters) {
  const CaptionEmbedder embedder(8, 32);
  const auto a = embedder.embed("a red square on a blue background");
  const auto b = embedder.embed("a blue square on a red background");
  EXPECT_FALSE(at::allclose(a, b));
  // Same words, so the summed word vectors agree; only their positions differ.
  EXPECT_TRUE(at::allclose(a.sum(0), b.sum(0), 1e-5, 1e-5));
}

TEST(CaptionEmbedder, PadsWithZerosAndTruncates) {
  const CaptionEmbedder embedder(5, 16);
  const auto short_caption = embedder.embed("red circle");
  EXPECT_TRUE(at::equal(short_caption.slice(0, 2), at::zeros({3, 16})));
  EXPECT_GT(short_caption[1].norm().item<double>(), 0.1);
  const auto long_caption = embedder.embed("one two three four five six seven");
  EXPECT_TRUE(at::equal(long_caption, embedder.embed("one two three four five")));
  EXPECT_TRUE(at::equal(embedder.embed(""), at::zeros({5, 16})));
}

TEST(CaptionEmbedder, DifferentWordsGetDifferentUnitVectors) {
  const CaptionEmbedder embedder(8, 32);
  const std::vector<std::string> words = {"red", "green", "blue", "circle", "square", "a", "on"};
  for (std::size_t i = 0; i < words.size(); ++i) {
    const auto vi = embedder.word_vector(words[i]);
    EXPECT_NEAR(vi.norm().item<double>(), 1.0, 1e-5);
    for (std::size_t j = i + 1; j < words.size(); ++j) {
      const double cosine = (vi * embedder.word_vector(words[j])).sum().item<double>();
      EXPECT_LT(std::abs(cosine), 0.9) << words[i] << " vs " << words[j];
    }
  }
  EXPECT_NEAR(embedder.position_vector(3).norm().item<double>(), 1.0, 1e-5);
  EXPECT_FALSE(at::equal(embedder.position_vector(0), embedder.position_vector(1)));
  EXPECT_FALSE(at::equal(embedder.embed("red"), embedder.embed("green")));
}

TEST(CaptionEmbedder, SplitsLowerCasedWords) {
  EXPECT_EQ(CaptionEmbedder::words(" A  Red\ncircle "),
            (std::vector<std::string>{"a", "red", "circle"}));
  EXPECT_THROW(CaptionEmbedder(0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace microdit::data
