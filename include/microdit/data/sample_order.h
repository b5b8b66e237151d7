// The one global sample order of a training run. Position p of the global sample stream reads
// dataset index index_at(p); the stream does not depend on the number of processes or on the
// micro-batch size, so a run resumed at step s on another world size sees the same samples.
// Epoch e = p / size walks a permutation of [0, size) drawn from a stream seeded by (seed, e).
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

namespace microdit::data {

class SampleOrder {
 public:
  SampleOrder(int64_t dataset_size, uint64_t seed);
  SampleOrder(const SampleOrder& other);
  SampleOrder& operator=(const SampleOrder& other);

  int64_t dataset_size() const { return size_; }
  uint64_t seed() const { return seed_; }

  // Dataset index at `global_position` >= 0. Cheap when called with increasing positions: the
  // current epoch's permutation is cached. Safe to call from several threads.
  int64_t index_at(int64_t global_position) const;
  std::vector<int64_t> indices_at(const std::vector<int64_t>& global_positions) const;

  // The permutation of epoch `epoch` (Fisher-Yates over SplitMix64, bit-stable everywhere).
  std::vector<int64_t> permutation(int64_t epoch) const;

 private:
  int64_t size_;
  uint64_t seed_;
  mutable std::mutex mutex_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_;
};

// The global positions that micro-batch `micro_index` of rank `rank` reads at step `step`.
// Global batch `step` covers positions [step*global_batch, (step+1)*global_batch); rank r takes
// the contiguous slice [r*G/W, (r+1)*G/W) of it, split into micro-batches of `micro_batch`.
// Throws std::invalid_argument unless W divides G, micro_batch divides G/W and every index is
// in range.
std::vector<int64_t> positions_for(int64_t step, int64_t global_batch, int64_t rank,
                                   int64_t world_size, int64_t micro_batch, int64_t micro_index);

}  // namespace microdit::data
