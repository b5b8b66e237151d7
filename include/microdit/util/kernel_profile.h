// Where the time of a few training steps goes: LibTorch's Kineto profiler around a callable,
// summed per GPU kernel (or per CPU operator when no GPU runs), as JSON lines. Used by
// microdit-bench --profile.
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace microdit::util {

struct KernelTotal {
  std::string name;
  int64_t calls = 0;
  double total_ms = 0;
};

// Runs `work` under the profiler; returns totals per kernel name, largest first. Kernels run on
// the GPU when `cuda` is true; otherwise CPU operators (self time is not separated: nested
// operators count in their parents too).
std::vector<KernelTotal> profile_kernels(const std::function<void()>& work, bool cuda);

// One JSON line per kernel (the `top` largest), names shortened to `max_name` characters.
void print_kernel_totals(std::ostream& out, const std::vector<KernelTotal>& totals, int64_t top,
                         double per = 1.0, std::size_t max_name = 160);

}  // namespace microdit::util
