#include "microdit/model/masking.h"

namespace microdit::model {

int64_t kept_tokens(int64_t num_tokens, double mask_ratio) {
  return static_cast<int64_t>(static_cast<double>(num_tokens) * (1.0 - mask_ratio));
}

TokenMask mask_from_noise(const at::Tensor& noise, double mask_ratio) {
  const auto B = noise.size(0), T = noise.size(1);
  const auto len_keep = kept_tokens(T, mask_ratio);
  auto ids_shuffle = at::argsort(noise, /*dim=*/1, /*descending=*/false);
  auto ids_restore = at::argsort(ids_shuffle, /*dim=*/1, /*descending=*/false);
  auto mask = at::ones({B, T}, noise.options().dtype(at::kFloat));
  mask.narrow(1, 0, len_keep).zero_();
  return {ids_shuffle.narrow(1, 0, len_keep).contiguous(), ids_restore,
          at::gather(mask, 1, ids_restore)};
}

TokenMask sample_mask(int64_t batch, int64_t num_tokens, double mask_ratio,
                      std::optional<at::Generator> generator, at::Device device) {
  auto noise = at::rand({batch, num_tokens}, generator, at::TensorOptions(device));
  return mask_from_noise(noise, mask_ratio);
}

at::Tensor keep_tokens(const at::Tensor& x, const TokenMask& mask) {
  const auto& idx = mask.ids_keep;
  return at::gather(x, 1, idx.unsqueeze(-1).expand({idx.size(0), idx.size(1), x.size(2)}));
}

at::Tensor restore_tokens(const at::Tensor& x, const TokenMask& mask,
                          const at::Tensor& mask_token) {
  const auto B = x.size(0), Tk = x.size(1), D = x.size(2);
  const auto T = mask.ids_restore.size(1);
  auto filler = mask_token.to(x.scalar_type()).expand({B, T - Tk, D});
  auto full = at::cat({x, filler}, 1);  // (B,T,D) in shuffled order
  return at::gather(full, 1, mask.ids_restore.unsqueeze(-1).expand({B, T, D}));
}

}  // namespace microdit::model
