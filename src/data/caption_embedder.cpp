#include "microdit/data/caption_embedder.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "microdit/data/dataset.h"

namespace microdit::data {

namespace {

// Seeds of position vectors live in their own domain, apart from word hashes.
constexpr uint64_t kPositionDomain = 0x706f736974696f6eULL;  // "position"

// Components uniform in [-1, 1), then scaled to unit norm: only IEEE-exact arithmetic (no libm
// calls), so the vector is bit-identical on every platform.
std::vector<float> unit_vector(uint64_t seed, int64_t channels) {
  SplitMix64 rng(seed);
  std::vector<double> values(static_cast<std::size_t>(channels));
  double norm2 = 0;
  for (double& v : values) {
    v = 2 * rng.uniform() - 1;
    norm2 += v * v;
  }
  const double scale = norm2 > 0 ? 1 / std::sqrt(norm2) : 0;
  std::vector<float> out(values.size());
  for (std::size_t c = 0; c < values.size(); ++c) out[c] = static_cast<float>(values[c] * scale);
  return out;
}

at::Tensor to_tensor(const std::vector<float>& values) {
  auto out = at::empty({static_cast<int64_t>(values.size())}, at::kFloat);
  std::copy(values.begin(), values.end(), out.data_ptr<float>());
  return out;
}

std::vector<float> position_values(int64_t position, int64_t channels) {
  return unit_vector(mix_seed(kPositionDomain, static_cast<uint64_t>(position)), channels);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

}  // namespace

CaptionEmbedder::CaptionEmbedder(int64_t length, int64_t channels)
    : length_(length), channels_(channels) {
  if (length <= 0 || channels <= 0) {
    throw std::invalid_argument(
        c10::str("CaptionEmbedder: length and channels must be positive, "
                 "got length=",
                 length, ", channels=", channels));
  }
}

std::vector<std::string> CaptionEmbedder::words(std::string_view caption) {
  std::vector<std::string> out;
  std::string word;
  for (char c : caption) {
    if (is_space(c)) {
      if (!word.empty()) out.push_back(std::move(word));
      word.clear();
    } else {
      word.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

at::Tensor CaptionEmbedder::word_vector(std::string_view word) const {
  return to_tensor(unit_vector(fnv1a64(word), channels_));
}

at::Tensor CaptionEmbedder::position_vector(int64_t position) const {
  return to_tensor(position_values(position, channels_));
}

at::Tensor CaptionEmbedder::embed(std::string_view caption) const {
  auto out = at::zeros({length_, channels_}, at::kFloat);  // (L,Cy)
  const auto tokens = words(caption);
  const int64_t n = std::min<int64_t>(length_, static_cast<int64_t>(tokens.size()));
  float* data = out.data_ptr<float>();
  for (int64_t t = 0; t < n; ++t) {
    const auto word = unit_vector(fnv1a64(tokens[t]), channels_);
    const auto position = position_values(t, channels_);
    float* row = data + t * channels_;
    for (int64_t c = 0; c < channels_; ++c) row[c] = word[c] + position[c];
  }
  return out;
}

}  // namespace microdit::data
