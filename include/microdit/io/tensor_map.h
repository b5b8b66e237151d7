// Named tensors as they travel between files and modules (a state dict), plus formatting helpers.
#pragma once

#include <ATen/ATen.h>

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

}  // namespace microdit::io
