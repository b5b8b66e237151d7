// EDM preconditioning, loss reduction and sampler schedule against the formulas of Karras et al.
#include <gtest/gtest.h>

#include <cmath>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/diffusion/edm_precond.h"
#include "microdit/diffusion/edm_sampler.h"
#include "test_support.h"

namespace microdit {
namespace {

TEST(EDM, PreconditioningCoefficients) {
  diffusion::EDMConfig c;
  const double s = 2.5, sd = c.sigma_data;
  at::Tensor seen_input, seen_noise;
  auto network = [&](const at::Tensor& x, const at::Tensor& c_noise) {
    seen_input = x;
    seen_noise = c_noise;
    return at::ones_like(x);
  };
  auto x = at::full({1, 1, 1, 1}, 3.0);
  auto D = diffusion::edm_denoise(network, x, at::full({1}, s), c);
  const double c_skip = sd * sd / (s * s + sd * sd);
  const double c_out = s * sd / std::sqrt(s * s + sd * sd);
  const double c_in = 1 / std::sqrt(s * s + sd * sd);
  EXPECT_NEAR(D.item<double>(), c_skip * 3 + c_out, 1e-6);
  EXPECT_NEAR(seen_input.item<double>(), c_in * 3, 1e-6);
  EXPECT_NEAR(seen_noise.item<double>(), std::log(s) / 4, 1e-6);
}

TEST(EDM, SigmaScheduleIsTheRhoSchedule) {
  diffusion::EDMConfig c;
  auto t = diffusion::edm_sigma_steps(5, c);
  ASSERT_EQ(t.numel(), 6);
  EXPECT_DOUBLE_EQ(t[0].item<double>(), 80.0);
  EXPECT_NEAR(t[4].item<double>(), 0.002, 1e-15);
  EXPECT_EQ(t[5].item<double>(), 0.0);
  const double r = 1 / 7.0;
  const double mid =
      std::pow(std::pow(80.0, r) + 0.5 * (std::pow(0.002, r) - std::pow(80.0, r)), 7);
  EXPECT_DOUBLE_EQ(t[2].item<double>(), mid);
}

TEST(EDM, MaskedLossIgnoresRemovedPatches) {
  auto c = test::small_config();
  model::DiT dit(c);
  for (auto& p : dit->parameters()) p.data().normal_(0, 0.05);
  auto x = at::randn({2, 4, 8, 8});
  auto y = at::randn({2, 7, 24});
  auto draws = diffusion::sample_loss_noise(x);
  const auto mask = model::sample_mask(2, 16, 0.75);
  diffusion::EDMConfig edm;
  at::NoGradGuard no_grad;
  auto loss = diffusion::edm_loss_per_sample(dit, x, y, draws, edm, &mask);
  // Removed patches hold mask_token in the output: a huge one must not reach the loss...
  dit->mask_token.fill_(1e6);
  EXPECT_TRUE(at::allclose(loss, diffusion::edm_loss_per_sample(dit, x, y, draws, edm, &mask)));
  dit->mask_token.zero_();
  // The reduction, written out per patch: mean of the weighted squared error over the 2x2x4
  // values of each kept patch, averaged over kept patches.
  auto sigma = (draws.rnd_normal * edm.P_std + edm.P_mean).exp();
  auto network = [&](const at::Tensor& in, const at::Tensor& c_noise) {
    return dit->forward(in, c_noise, y, &mask);
  };
  auto D = diffusion::edm_denoise(network, x + draws.noise * sigma, sigma, edm);
  auto weight = (sigma * sigma + 0.81) / (sigma * sigma * 0.81);
  auto err = weight * (D - x).pow(2);  // (B,C,H,W)
  for (int64_t b = 0; b < 2; ++b) {
    double sum = 0;
    int kept = 0;
    for (int64_t t = 0; t < 16; ++t) {
      if (mask.mask[b][t].item<float>() == 1.0f) continue;
      sum += err[b].narrow(1, 2 * (t / 4), 2).narrow(2, 2 * (t % 4), 2).mean().item<double>();
      ++kept;
    }
    EXPECT_NEAR(loss[b].item<double>(), sum / kept, 1e-5 * std::abs(sum / kept));
  }
}

TEST(EDM, ChurnUsesTheGivenGenerator) {
  auto c = test::small_config();
  model::DiT dit(c);
  for (auto& p : dit->parameters()) p.data().normal_(0, 0.05);
  diffusion::EDMConfig edm;
  edm.S_churn = 10;
  auto init = at::randn({1, 4, 8, 8});
  auto y = at::randn({1, 7, 24});
  auto run = [&](uint64_t seed) {
    diffusion::SamplerOptions o;
    o.num_steps = 3;
    o.cfg = 2.0;
    o.generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    return diffusion::edm_sample(dit, init, y, o, edm);
  };
  EXPECT_TRUE(at::equal(run(1), run(1)));
  EXPECT_FALSE(at::equal(run(1), run(2)));
}

}  // namespace
}  // namespace microdit
