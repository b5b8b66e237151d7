// Named tensors as they travel between files and modules (a state dict), plus formatting helpers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

namespace microdit::io {

using TensorMap = std::map<std::string, at::Tensor>;

// "[4,64,96]"; "[]" for a 0-rank tensor.
inline std::string shape_string(at::IntArrayRef shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// How many numbered children `prefix` has in `tensors`: 1 + the largest N among keys
// "<prefix>N.<...>" (0 when none), as a ModuleList's length shows in its state dict.
inline int64_t indexed_children(const TensorMap& tensors, const std::string& prefix) {
  int64_t count = 0;
  for (auto it = tensors.lower_bound(prefix); it != tensors.end(); ++it) {
    const std::string& key = it->first;
    if (key.compare(0, prefix.size(), prefix) != 0) break;
    const std::size_t dot = key.find('.', prefix.size());
    const std::string index = key.substr(prefix.size(), dot - prefix.size());
    if (index.empty() || index.size() > 9 || dot == std::string::npos ||
        index.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    count = std::max<int64_t>(count, std::stoll(index) + 1);
  }
  return count;
}

}  // namespace microdit::io
