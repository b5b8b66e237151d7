#include "microdit/data/dataset.h"

#include <c10/util/StringUtil.h>

#include <stdexcept>

#include "microdit/io/tensor_map.h"

namespace microdit::data {

Dataset::~Dataset() = default;

void check_index(int64_t index, int64_t size, std::string_view what) {
  if (index < 0 || index >= size) {
    throw std::out_of_range(c10::str(what, ": index ", index, " is out of range [0, ", size, ")"));
  }
}

Batch collate(const Dataset& dataset, const std::vector<int64_t>& dataset_indices,
              std::vector<int64_t> positions) {
  if (dataset_indices.empty()) throw std::invalid_argument("collate: empty batch");
  if (positions.size() != dataset_indices.size()) {
    throw std::invalid_argument(c10::str("collate: ", dataset_indices.size(),
                                         " dataset indices but ", positions.size(),
                                         " global positions"));
  }
  std::vector<at::Tensor> latents;
  std::vector<at::Tensor> captions;
  latents.reserve(dataset_indices.size());
  captions.reserve(dataset_indices.size());
  for (int64_t index : dataset_indices) {
    check_index(index, dataset.size(), "collate");
    Sample sample = dataset.get(index);
    if (!latents.empty() && (sample.latents.sizes() != latents.front().sizes() ||
                             sample.caption.sizes() != captions.front().sizes())) {
      throw std::runtime_error(c10::str(
          "collate: sample ", index, " has latents ", io::shape_string(sample.latents.sizes()),
          " and caption ", io::shape_string(sample.caption.sizes()), ", sample ",
          dataset_indices.front(), " has ", io::shape_string(latents.front().sizes()), " and ",
          io::shape_string(captions.front().sizes())));
    }
    latents.push_back(std::move(sample.latents));
    captions.push_back(std::move(sample.caption));
  }
  return {at::stack(latents), at::stack(captions).unsqueeze(1), dataset_indices,
          std::move(positions)};
}

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t n) {
  // Rejects the lowest (2^64 mod n) values so that every residue is equally likely.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t x = next();
    if (x >= threshold) return x % n;
  }
}

int64_t SplitMix64::between(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
}

double SplitMix64::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

uint64_t fnv1a64(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char byte : text) {
    hash ^= byte;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

uint64_t mix_seed(uint64_t a, uint64_t b) {
  SplitMix64 first(a);
  SplitMix64 second(first.next() ^ b);
  return second.next();
}

}  // namespace microdit::data
