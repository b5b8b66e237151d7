#include "microdit/model/pos_embed.h"

namespace microdit::model {
namespace {
// (M) positions -> (M, D) = [sin(p*w), cos(p*w)] in float64.
at::Tensor sincos_1d(int64_t dim, const at::Tensor& pos) {
  auto omega = at::arange(dim / 2, at::kDouble) / (static_cast<double>(dim) / 2.0);
  omega = 1.0 / at::pow(10000.0, omega);
  auto out = at::outer(pos.to(at::kDouble), omega);
  return at::cat({at::sin(out), at::cos(out)}, 1);
}
}  // namespace

at::Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid_size, double pos_interp_scale,
                               int64_t base_size) {
  const auto g = static_cast<float>(grid_size);
  auto coords = at::arange(grid_size, at::kFloat) / (g / static_cast<float>(base_size)) /
                static_cast<float>(pos_interp_scale);
  // Token index r*g + k: column coordinate varies fastest.
  auto column = coords.repeat({grid_size});
  auto row = coords.repeat_interleave(grid_size);
  auto emb = at::cat({sincos_1d(dim / 2, column), sincos_1d(dim / 2, row)}, 1);
  return emb.to(at::kFloat).unsqueeze(0);
}

}  // namespace microdit::model
