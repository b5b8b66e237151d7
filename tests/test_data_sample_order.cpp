// Tests for the global sample order and its slicing into ranks and micro-batches.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <thread>

#include "microdit/data/sample_order.h"

namespace microdit::data {
namespace {

std::vector<int64_t> epoch_indices(const SampleOrder& order, int64_t epoch) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < order.dataset_size(); ++i) {
    out.push_back(order.index_at(epoch * order.dataset_size() + i));
  }
  return out;
}

TEST(SampleOrder, EachEpochIsAPermutation) {
  SampleOrder order(37, 5);
  std::vector<int64_t> all(37);
  std::iota(all.begin(), all.end(), 0);
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    auto indices = epoch_indices(order, epoch);
    std::sort(indices.begin(), indices.end());
    EXPECT_EQ(indices, all) << "epoch " << epoch;
  }
}

TEST(SampleOrder, EpochsDifferAndAreReproducible) {
  SampleOrder a(100, 7), b(100, 7), other_seed(100, 8);
  const auto e0 = epoch_indices(a, 0);
  const auto e1 = epoch_indices(a, 1);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, epoch_indices(b, 0));
  EXPECT_EQ(e1, epoch_indices(b, 1));
  EXPECT_NE(e0, epoch_indices(other_seed, 0));
  // Random access (as after a resume) agrees with the sequential walk.
  EXPECT_EQ(b.index_at(1 * 100 + 17), e1[17]);
  EXPECT_EQ(b.index_at(0 * 100 + 99), e0[99]);
  EXPECT_EQ(a.permutation(1), e1);
}

// Fisher-Yates over SplitMix64, computed by an independent Python implementation: pins the order
// so that runs resume onto the same samples across platforms and library versions.
TEST(SampleOrder, MatchesPinnedPermutations) {
  SampleOrder order(10, 42);
  EXPECT_EQ(order.permutation(0), (std::vector<int64_t>{6, 1, 8, 5, 2, 7, 4, 3, 9, 0}));
  EXPECT_EQ(order.permutation(1), (std::vector<int64_t>{9, 0, 5, 3, 7, 2, 8, 1, 6, 4}));
}

TEST(SampleOrder, CopiesAndThreadsSeeTheSameOrder) {
  SampleOrder order(50, 3);
  const std::vector<std::vector<int64_t>> expected = {epoch_indices(order, 2),
                                                      epoch_indices(order, 3)};
  SampleOrder copy = order;
  EXPECT_EQ(epoch_indices(copy, 2), expected[0]);
  // Threads alternating between epochs keep evicting each other's cached permutation.
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t repeat = 0; repeat < 20; ++repeat) {
        const std::size_t e = (repeat + t) % 2;
        mismatches[t] += epoch_indices(order, 2 + static_cast<int64_t>(e)) != expected[e];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(SampleOrder, RejectsBadArguments) {
  EXPECT_THROW(SampleOrder(0, 1), std::invalid_argument);
  EXPECT_THROW(SampleOrder(4, 1).index_at(-1), std::out_of_range);
}

// The positions of one step, gathered over ranks then micro-batches.
std::vector<int64_t> gather_step(int64_t step, int64_t global_batch, int64_t world_size,
                                 int64_t micro_batch) {
  std::vector<int64_t> out;
  for (int64_t rank = 0; rank < world_size; ++rank) {
    const int64_t micro_batches = global_batch / world_size / micro_batch;
    for (int64_t m = 0; m < micro_batches; ++m) {
      auto p = positions_for(step, global_batch, rank, world_size, micro_batch, m);
      EXPECT_EQ(static_cast<int64_t>(p.size()), micro_batch);
      out.insert(out.end(), p.begin(), p.end());
    }
  }
  return out;
}

TEST(PositionsFor, RanksAndMicroBatchesTileTheGlobalBatchInOrder) {
  const int64_t global_batch = 24;
  const SampleOrder order(10, 11);  // steps cross epoch boundaries
  for (int64_t step : {0, 1, 5}) {
    std::vector<int64_t> expected(global_batch);
    std::iota(expected.begin(), expected.end(), step * global_batch);
    for (int64_t world_size : {1, 2, 3, 4, 6, 8}) {
      const int64_t per_rank = global_batch / world_size;
      for (int64_t micro_batch = 1; micro_batch <= per_rank; ++micro_batch) {
        if (per_rank % micro_batch != 0) continue;
        const auto positions = gather_step(step, global_batch, world_size, micro_batch);
        EXPECT_EQ(positions, expected)
            << "step " << step << " world " << world_size << " micro " << micro_batch;
        EXPECT_EQ(order.indices_at(positions), order.indices_at(expected));
      }
    }
  }
}

TEST(PositionsFor, RankTakesAContiguousSlice) {
  // global batch 8 on 2 ranks, micro-batch 2: rank 1's second micro-batch of step 3.
  EXPECT_EQ(positions_for(3, 8, 1, 2, 2, 1), (std::vector<int64_t>{30, 31}));
  EXPECT_EQ(positions_for(0, 8, 0, 1, 8, 0), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(PositionsFor, RejectsIndivisibleOrOutOfRangeArguments) {
  EXPECT_THROW(positions_for(0, 10, 0, 3, 1, 0), std::invalid_argument);  // 3 does not divide 10
  EXPECT_THROW(positions_for(0, 8, 0, 2, 3, 0), std::invalid_argument);   // 3 does not divide 4
  EXPECT_THROW(positions_for(0, 8, 2, 2, 2, 0), std::invalid_argument);   // rank
  EXPECT_THROW(positions_for(0, 8, 0, 2, 2, 2), std::invalid_argument);   // micro_index
  EXPECT_THROW(positions_for(-1, 8, 0, 2, 2, 0), std::invalid_argument);  // step
  EXPECT_THROW(positions_for(0, 0, 0, 1, 1, 0), std::invalid_argument);   // empty batch
}

}  // namespace
}  // namespace microdit::data
