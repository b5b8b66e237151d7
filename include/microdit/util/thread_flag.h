// A switch for one thread, set for a scope: the model's execution choices (low-precision
// LayerNorms, fused kernels, recomputed activations) that the training step turns on around its
// forward pass without threading an option through every module, as torch.autocast does.
#pragma once

namespace microdit::util {

// One flag per Tag type, false by default, thread-local.
template <class Tag>
class ThreadFlagGuard {
 public:
  explicit ThreadFlagGuard(bool enabled = true) : previous_(flag()) { flag() = enabled; }
  ~ThreadFlagGuard() { flag() = previous_; }
  ThreadFlagGuard(const ThreadFlagGuard&) = delete;
  ThreadFlagGuard& operator=(const ThreadFlagGuard&) = delete;
  static bool active() { return flag(); }

 private:
  static bool& flag() {
    thread_local bool value = false;
    return value;
  }
  bool previous_;
};

}  // namespace microdit::util
