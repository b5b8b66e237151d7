// The hidden widths of the DiT blocks' attention and feed-forward layers, from the config's
// ratios: shared by the modules and by the counts that need no module (model/state_dict_shapes.h,
// model/flops.h).
#pragma once
#include <cstdint>

namespace microdit::nn {

// `value` rounded up to a multiple of `multiple_of`.
int64_t round_up(int64_t value, int64_t multiple_of);

// int(2*hidden/3) rounded up to a multiple of `multiple_of` (official FeedForward.__init__).
int64_t swiglu_hidden_dim(int64_t hidden_dim, int64_t multiple_of);

// Attention width: dim when qkv_ratio is 1, else int(dim*ratio) rounded up to 2*head_dim.
int64_t qkv_hidden_dim(int64_t dim, double qkv_ratio, int64_t head_dim);

}  // namespace microdit::nn
