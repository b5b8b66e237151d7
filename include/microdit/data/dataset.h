// The data layer's common vocabulary: a Dataset of (image latents, caption embedding) samples,
// the Batch a training step consumes, and the deterministic random streams the data layer draws
// from (counter-based and bit-exact across platforms and LibTorch versions, which at::Generator
// draws are not promised to be).
// Legend: B batch, C latent channels, H W latent size, L caption tokens, Cy caption channels.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace microdit::data {

struct Sample {
  at::Tensor latents;  // (C,H,W) float32
  at::Tensor caption;  // (L,Cy) float32
};

// A random-access collection of samples. get() returns tensors the caller owns (no aliasing of
// internal storage) and must be safe to call from several threads at once.
class Dataset {
 public:
  virtual ~Dataset();
  virtual int64_t size() const = 0;
  virtual Sample get(int64_t index) const = 0;
};

struct Batch {
  at::Tensor latents;                     // (B,C,H,W) float32
  at::Tensor captions;                    // (B,1,L,Cy) float32
  std::vector<int64_t> indices;           // dataset index of each sample
  std::vector<int64_t> global_positions;  // position of each sample in the global sample stream
};

// Stacks the samples at `dataset_indices`; `positions` (same length) is stored as-is.
// Throws std::invalid_argument for an empty batch, a length mismatch or an index out of range,
// std::runtime_error when samples disagree in shape.
Batch collate(const Dataset& dataset, const std::vector<int64_t>& dataset_indices,
              std::vector<int64_t> positions);

// Throws std::out_of_range naming `what` unless 0 <= index < size.
void check_index(int64_t index, int64_t size, std::string_view what);

// SplitMix64 (Steele, Lea & Flood 2014): the data layer's random stream.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, n) without modulo bias; n > 0.
  uint64_t below(uint64_t n);
  // Uniform in [lo, hi], lo <= hi.
  int64_t between(int64_t lo, int64_t hi);
  // Uniform in [0, 1) with 53 random bits.
  double uniform();

 private:
  uint64_t state_;
};

// FNV-1a 64-bit hash of the bytes of `text`.
uint64_t fnv1a64(std::string_view text);

// One seed from two: distinct (a, b) pairs give unrelated streams.
uint64_t mix_seed(uint64_t a, uint64_t b);

}  // namespace microdit::data
