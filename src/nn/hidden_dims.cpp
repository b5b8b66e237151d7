#include "microdit/nn/hidden_dims.h"

namespace microdit::nn {

int64_t round_up(int64_t value, int64_t multiple_of) {
  return multiple_of * ((value + multiple_of - 1) / multiple_of);
}

int64_t swiglu_hidden_dim(int64_t hidden_dim, int64_t multiple_of) {
  return round_up(static_cast<int64_t>(2.0 * static_cast<double>(hidden_dim) / 3.0), multiple_of);
}

int64_t qkv_hidden_dim(int64_t dim, double qkv_ratio, int64_t head_dim) {
  if (qkv_ratio == 1.0) return dim;
  return round_up(static_cast<int64_t>(static_cast<double>(dim) * qkv_ratio), 2 * head_dim);
}

}  // namespace microdit::nn
