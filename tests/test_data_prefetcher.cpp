// The background producer of micro-batch inputs: order, look-ahead bound, errors.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "microdit/data/prefetcher.h"

namespace microdit::data {
namespace {

TEST(Prefetcher, DeliversKeysInOrderFromTheFirstOne) {
  Prefetcher<int64_t> p([](int64_t key) { return key * key; }, /*first=*/5, /*depth=*/3);
  for (int64_t k = 5; k < 40; ++k) EXPECT_EQ(p.take(k), k * k);
}

TEST(Prefetcher, StaysAtMostDepthAhead) {
  std::atomic<int64_t> produced{0};
  Prefetcher<int64_t> p(
      [&](int64_t key) {
        ++produced;
        return key;
      },
      0, 2);
  // Wait (bounded) for the worker to fill its look-ahead, then check it goes no further.
  auto settle_at = [&](int64_t n) {
    for (int i = 0; i < 500 && produced.load() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return produced.load();
  };
  EXPECT_EQ(settle_at(2), 2);
  EXPECT_EQ(p.take(0), 0);
  EXPECT_EQ(settle_at(3), 3);
}

TEST(Prefetcher, RethrowsTheProducersError) {
  Prefetcher<int64_t> p(
      [](int64_t key) -> int64_t {
        if (key == 2) throw std::runtime_error("shard 7 is truncated");
        return key;
      },
      0, 4);
  EXPECT_EQ(p.take(0), 0);
  EXPECT_EQ(p.take(1), 1);
  try {
    p.take(2);
    FAIL() << "the error of key 2 must reach the consumer";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "shard 7 is truncated");
  }
}

TEST(Prefetcher, OutOfSequenceKeyIsAnError) {
  Prefetcher<int64_t> p([](int64_t key) { return key; }, 0, 2);
  EXPECT_THROW(p.take(1), std::logic_error);
}

}  // namespace
}  // namespace microdit::data
