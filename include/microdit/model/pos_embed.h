// Fixed 2-D sin-cos position embedding (official utils.get_2d_sincos_pos_embed).
#pragma once
#include <ATen/ATen.h>

namespace microdit::model {

// [1, g*g, D] float32. Coordinates c = arange(g) / (g / base_size) / pos_interp_scale (float32,
// as numpy computes them), embedded in float64: token (row r, column k) gets [E(c_k), E(c_r)],
// E(p) = [sin(p*w_i), cos(p*w_i)], w_i = 10000^(-i/(D/4)), i < D/4.
at::Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid_size, double pos_interp_scale,
                               int64_t base_size);

}  // namespace microdit::model
