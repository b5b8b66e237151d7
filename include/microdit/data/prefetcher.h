// Produces the inputs of the next micro-batches on a background thread while the current one
// trains. Inputs are pure functions of their key (the step and micro-batch index), so
// prefetching changes no result, only when the work is done.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace microdit::data {

template <class T>
class Prefetcher {
 public:
  // produce(key) is called on the worker thread for keys first, first+1, ... at most `depth`
  // ahead of the key last taken.
  Prefetcher(std::function<T(int64_t)> produce, int64_t first, int64_t depth)
      : produce_(std::move(produce)), next_(first), depth_(depth), worker_([this] { run(); }) {}

  ~Prefetcher() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }

  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The input for `key`, which must be the next key in sequence; rethrows a producer's error.
  T take(int64_t key) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !ready_.empty() || error_; });
    if (ready_.empty()) std::rethrow_exception(error_);
    auto [k, value] = std::move(ready_.front());
    ready_.pop_front();
    changed_.notify_all();
    if (k != key) throw std::logic_error("prefetcher asked for an out-of-sequence key");
    return std::move(value);
  }

 private:
  void run() {
    while (true) {
      int64_t key;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || static_cast<int64_t>(ready_.size()) < depth_; });
        if (stop_ || error_) return;
        key = next_++;
      }
      try {
        T value = produce_(key);
        std::lock_guard lock(mutex_);
        ready_.emplace_back(key, std::move(value));
      } catch (...) {
        std::lock_guard lock(mutex_);
        error_ = std::current_exception();
      }
      changed_.notify_all();
    }
  }

  std::function<T(int64_t)> produce_;
  int64_t next_;
  int64_t depth_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<int64_t, T>> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;  // last: starts after every other member is ready
};

}  // namespace microdit::data
