#include "microdit/diffusion/edm_precond.h"

namespace microdit::diffusion {

at::Tensor edm_denoise(const NetworkFn& network, const at::Tensor& x, const at::Tensor& sigma_in,
                       const EDMConfig& config) {
  const double sd2 = config.sigma_data * config.sigma_data;
  auto sigma = sigma_in.to(x.scalar_type()).reshape({-1, 1, 1, 1});
  auto c_skip = sd2 / (sigma * sigma + sd2);
  auto c_out = sigma * config.sigma_data / (sigma * sigma + sd2).sqrt();
  auto c_in = 1 / (sd2 + sigma * sigma).sqrt();
  auto c_noise = sigma.log() / 4;
  auto F_x = network((c_in * x).to(x.scalar_type()), c_noise.flatten());
  return c_skip * x + c_out * F_x;
}

}  // namespace microdit::diffusion
