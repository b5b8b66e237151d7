#include "microdit/model/token_route.h"

namespace microdit::model {
namespace {
at::Tensor expanded_index(const at::Tensor& ids, int64_t width) {
  return ids.unsqueeze(-1).expand({ids.size(0), ids.size(1), width});
}
}  // namespace

int64_t routed_tokens(int64_t num_tokens, double ratio) {
  return num_tokens - static_cast<int64_t>(static_cast<double>(num_tokens) * ratio);
}

TokenRoute route_from_noise(const at::Tensor& noise, double ratio, int64_t start_block,
                            int64_t end_block) {
  const auto keep = routed_tokens(noise.size(1), ratio);
  auto ids_shuffle = at::argsort(noise, /*dim=*/1, /*descending=*/false);
  return {start_block, end_block, ids_shuffle.narrow(1, 0, keep).contiguous()};
}

at::Tensor start_route(const at::Tensor& x, const TokenRoute& route) {
  return at::gather(x, 1, expanded_index(route.ids_keep, x.size(2)));
}

at::Tensor end_route(const at::Tensor& x, const at::Tensor& before, const TokenRoute& route) {
  // Out of place: `before` stays as autograd saw it. Under autocast the route's output may be
  // narrower than the saved stream; the stream keeps its dtype.
  return before.scatter(1, expanded_index(route.ids_keep, before.size(2)),
                        x.to(before.scalar_type()));
}

}  // namespace microdit::model
