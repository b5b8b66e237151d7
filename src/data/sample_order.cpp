#include "microdit/data/sample_order.h"

#include <c10/util/StringUtil.h>

#include <numeric>
#include <stdexcept>
#include <utility>

#include "microdit/data/dataset.h"

namespace microdit::data {

SampleOrder::SampleOrder(int64_t dataset_size, uint64_t seed) : size_(dataset_size), seed_(seed) {
  if (dataset_size <= 0) {
    throw std::invalid_argument(
        c10::str("SampleOrder: dataset size must be positive, got ", dataset_size));
  }
}

SampleOrder::SampleOrder(const SampleOrder& other) : size_(other.size_), seed_(other.seed_) {}

SampleOrder& SampleOrder::operator=(const SampleOrder& other) {
  if (this == &other) return *this;
  std::scoped_lock lock(mutex_);
  size_ = other.size_;
  seed_ = other.seed_;
  cached_epoch_ = -1;
  cached_.clear();
  return *this;
}

std::vector<int64_t> SampleOrder::permutation(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<std::size_t>(size_));
  std::iota(order.begin(), order.end(), int64_t{0});
  SplitMix64 rng(mix_seed(seed_, static_cast<uint64_t>(epoch)));
  for (int64_t i = size_ - 1; i > 0; --i) {
    std::swap(order[i], order[rng.below(static_cast<uint64_t>(i) + 1)]);
  }
  return order;
}

int64_t SampleOrder::index_at(int64_t global_position) const {
  if (global_position < 0) {
    throw std::out_of_range(
        c10::str("SampleOrder: global position must be non-negative, got ", global_position));
  }
  const int64_t epoch = global_position / size_;
  std::scoped_lock lock(mutex_);
  if (epoch != cached_epoch_) {
    cached_ = permutation(epoch);
    cached_epoch_ = epoch;
  }
  return cached_[global_position % size_];
}

std::vector<int64_t> SampleOrder::indices_at(const std::vector<int64_t>& global_positions) const {
  std::vector<int64_t> indices;
  indices.reserve(global_positions.size());
  for (int64_t position : global_positions) indices.push_back(index_at(position));
  return indices;
}

std::vector<int64_t> positions_for(int64_t step, int64_t global_batch, int64_t rank,
                                   int64_t world_size, int64_t micro_batch, int64_t micro_index) {
  auto fail = [&](const std::string& problem) {
    throw std::invalid_argument(c10::str("positions_for(step=", step,
                                         ", global_batch=", global_batch, ", rank=", rank,
                                         ", world_size=", world_size, ", micro_batch=", micro_batch,
                                         ", micro_index=", micro_index, "): ", problem));
  };
  if (step < 0) fail("step must be non-negative");
  if (global_batch <= 0 || world_size <= 0 || micro_batch <= 0) {
    fail("global_batch, world_size and micro_batch must be positive");
  }
  if (global_batch % world_size != 0) fail("world_size must divide global_batch");
  const int64_t per_rank = global_batch / world_size;
  if (per_rank % micro_batch != 0) fail("micro_batch must divide global_batch / world_size");
  if (rank < 0 || rank >= world_size) fail("rank must be in [0, world_size)");
  if (micro_index < 0 || micro_index >= per_rank / micro_batch) {
    fail(c10::str("micro_index must be in [0, ", per_rank / micro_batch, ")"));
  }
  const int64_t first = step * global_batch + rank * per_rank + micro_index * micro_batch;
  std::vector<int64_t> positions(static_cast<std::size_t>(micro_batch));
  std::iota(positions.begin(), positions.end(), first);
  return positions;
}

}  // namespace microdit::data
