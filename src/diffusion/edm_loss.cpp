#include "microdit/diffusion/edm_loss.h"

namespace microdit::diffusion {

EDMLossNoise sample_loss_noise(const at::Tensor& x, std::optional<at::Generator> generator) {
  return {at::randn({x.size(0), 1, 1, 1}, generator, x.options()),
          at::randn(x.sizes(), generator, x.options())};
}

at::Tensor edm_loss_per_sample(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                               const EDMLossNoise& draws, const EDMConfig& config,
                               const model::TokenMask* mask, const model::TokenRoute* route) {
  auto sigma = (draws.rnd_normal * config.P_std + config.P_mean).exp();  // (B,1,1,1)
  return edm_loss_at_sigma(dit, x, y, sigma, draws.noise, config, mask, route);
}

at::Tensor edm_loss_at_sigma(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                             const at::Tensor& sigma, const at::Tensor& noise,
                             const EDMConfig& config, const model::TokenMask* mask,
                             const model::TokenRoute* route) {
  const double sd = config.sigma_data;
  auto weight = (sigma * sigma + sd * sd) / ((sigma * sd) * (sigma * sd));
  auto n = noise * sigma;
  auto network = [&](const at::Tensor& x_in, const at::Tensor& c_noise) {
    return dit->forward(x_in, c_noise, y, mask, route);
  };
  auto D_xn = edm_denoise(network, x + n, sigma, config);
  auto loss = weight * (D_xn - x).pow(2);  // (B,C,H,W)
  if (!mask) return loss.mean({1, 2, 3});
  const auto p = dit->config.patch_size;
  auto per_token = at::avg_pool2d(loss.mean(/*dim=*/1), {p, p}).flatten(1);  // (B,T)
  auto kept = 1 - mask->mask;
  return (per_token * kept).sum(1) / kept.sum(1);
}

at::Tensor edm_loss(model::DiT& dit, const at::Tensor& x, const at::Tensor& y,
                    const EDMLossNoise& draws, const EDMConfig& config,
                    const model::TokenMask* mask) {
  return edm_loss_per_sample(dit, x, y, draws, config, mask).mean();
}

}  // namespace microdit::diffusion
