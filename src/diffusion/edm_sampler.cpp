#include "microdit/diffusion/edm_sampler.h"

#include <algorithm>
#include <cmath>

namespace microdit::diffusion {

at::Tensor edm_sigma_steps(int64_t num_steps, const EDMConfig& c, at::Device device) {
  auto i = at::arange(num_steps, at::TensorOptions(at::kDouble).device(device));
  const double max_r = std::pow(c.sigma_max, 1.0 / c.rho);
  const double min_r = std::pow(c.sigma_min, 1.0 / c.rho);
  auto t = (max_r + i / (num_steps - 1) * (min_r - max_r)).pow(c.rho);
  return at::cat({t, at::zeros_like(t.narrow(0, 0, 1))});
}

at::Tensor edm_sample(model::DiT& dit, const at::Tensor& init, const at::Tensor& y,
                      const SamplerOptions& options, const EDMConfig& c) {
  at::NoGradGuard no_grad;
  const auto N = options.num_steps;
  auto network = [&](const at::Tensor& x_in, const at::Tensor& c_noise) {
    // As the official sampler: guidance only for cfg > 1.
    return options.cfg > 1.0 ? dit->forward_with_cfg(x_in, c_noise, y, options.cfg)
                             : dit->forward(x_in, c_noise, y);
  };
  auto denoise = [&](const at::Tensor& x, const at::Tensor& sigma) {
    return edm_denoise(network, x.to(at::kFloat), sigma.to(at::kFloat), c).to(at::kDouble);
  };
  auto t_steps = edm_sigma_steps(N, c, init.device());
  auto x_next = init.to(at::kDouble) * t_steps[0];
  for (int64_t i = 0; i < N; ++i) {
    auto x_cur = x_next;
    auto t_cur = t_steps[i], t_next = t_steps[i + 1];
    const double t_cur_v = t_cur.item<double>();
    const double gamma = (c.S_min <= t_cur_v && t_cur_v <= c.S_max)
                             ? std::min(c.S_churn / N, std::sqrt(2.0) - 1)
                             : 0.0;
    // Increase noise temporarily (Alg. 2 lines 4-6).
    auto t_hat = t_cur + gamma * t_cur;
    auto x_hat = x_cur;
    if (gamma > 0) {
      x_hat = x_cur + (t_hat * t_hat - t_cur * t_cur).sqrt() * c.S_noise *
                          at::randn(x_cur.sizes(), options.generator, x_cur.options());
    }
    // Euler step (line 7-8), then the 2nd-order correction (lines 9-11).
    auto d_cur = (x_hat - denoise(x_hat, t_hat)) / t_hat;
    x_next = x_hat + (t_next - t_hat) * d_cur;
    if (i < N - 1) {
      auto d_prime = (x_next - denoise(x_next, t_next)) / t_next;
      x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime);
    }
  }
  return x_next.to(at::kFloat);
}

}  // namespace microdit::diffusion
