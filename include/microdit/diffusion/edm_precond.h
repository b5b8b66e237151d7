// EDM preconditioning (Karras et al. 2022, Table 1): D(x; s) = c_skip x + c_out F(c_in x; c_noise).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <limits>

namespace microdit::diffusion {

struct EDMConfig {
  double sigma_min = 0.002;
  double sigma_max = 80.0;
  double P_mean = -0.6;  // training: ln(sigma) ~ N(P_mean, P_std); 512 px uses 0, 0.6
  double P_std = 1.2;
  double sigma_data = 0.9;
  int64_t num_steps = 18;
  double rho = 7.0;
  double S_churn = 0.0;
  double S_min = 0.0;
  double S_max = std::numeric_limits<double>::infinity();
  double S_noise = 1.0;
};

// The network F: (scaled input (B,C,H,W), c_noise (B) or (1)) -> output (B,C,H,W).
using NetworkFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

// D(x; sigma). sigma has one entry per sample or one for all; it is cast to x's dtype first,
// as the official model_forward_wrapper does.
at::Tensor edm_denoise(const NetworkFn& network, const at::Tensor& x, const at::Tensor& sigma,
                       const EDMConfig& config);

}  // namespace microdit::diffusion
