#include "microdit/nn/init.h"

#include <cmath>

namespace microdit::nn {
namespace {
double normal_cdf(double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; }
}  // namespace

void trunc_normal_(at::Tensor t, double mean, double std, double a, double b) {
  at::NoGradGuard no_grad;
  const double l = normal_cdf((a - mean) / std);
  const double u = normal_cdf((b - mean) / std);
  t.uniform_(2 * l - 1, 2 * u - 1);
  t.erfinv_();
  t.mul_(std * std::sqrt(2.0));
  t.add_(mean);
  t.clamp_(a, b);
}

void xavier_uniform_2d_(at::Tensor t) {
  at::NoGradGuard no_grad;
  const double fan_out = static_cast<double>(t.size(0));
  const double fan_in = static_cast<double>(t.numel()) / fan_out;
  const double bound = std::sqrt(6.0 / (fan_in + fan_out));
  t.uniform_(-bound, bound);
}

void normal_(at::Tensor t, double std) {
  at::NoGradGuard no_grad;
  t.normal_(0.0, std);
}

void zeros_(at::Tensor t) {
  at::NoGradGuard no_grad;
  t.zero_();
}

}  // namespace microdit::nn
