// A built-in deterministic caption embedder standing in for the CLIP text encoder when no
// weights are at hand (the built-in demo). Token t of a caption is
//   word_vector(word_t) + position_vector(t)
// with both vectors fixed, pseudo-random and unit-norm: the word's vector is seeded by the FNV-1a
// hash of its bytes, so the same word embeds the same on every platform, and the position vector
// makes word order matter. Words are the lower-cased, whitespace-separated pieces of the caption;
// tokens past `length` are dropped and missing ones are zero.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace microdit::data {

class CaptionEmbedder {
 public:
  CaptionEmbedder(int64_t length, int64_t channels);

  int64_t length() const { return length_; }
  int64_t channels() const { return channels_; }

  // (length, channels) float32.
  at::Tensor embed(std::string_view caption) const;

  // The words embed() sees: ASCII lower-cased, split on whitespace, empty pieces dropped.
  static std::vector<std::string> words(std::string_view caption);

  // (channels) float32 unit vectors.
  at::Tensor word_vector(std::string_view word) const;
  at::Tensor position_vector(int64_t position) const;

 private:
  int64_t length_;
  int64_t channels_;
};

}  // namespace microdit::data
