#include "microdit/train/validation_loss.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/nn/autocast.h"
#include "microdit/train/sample_draws.h"

namespace microdit::train {

std::vector<double> default_validation_sigmas(const diffusion::EDMConfig& edm) {
  // The standard normal's quantiles at 0.1, 0.3, 0.5, 0.7, 0.9.
  constexpr double kQuantiles[] = {-1.2815515655446004, -0.5244005127080407, 0.0,
                                   0.5244005127080407, 1.2815515655446004};
  std::vector<double> sigmas;
  for (const double z : kQuantiles) sigmas.push_back(std::exp(edm.P_mean + edm.P_std * z));
  return sigmas;
}

uint64_t validation_noise_seed(uint64_t seed, int64_t index, double sigma) {
  // Another stream than the training draws' sample_seed(seed, step, position).
  constexpr uint64_t kValidationStream = 0x76616c6964617465ULL;  // "validate"
  return sample_seed(seed ^ kValidationStream, index, std::bit_cast<int64_t>(sigma));
}

ValidationLoss::ValidationLoss(std::shared_ptr<const data::Dataset> set, ValidationOptions options)
    : set_(std::move(set)),
      options_(std::move(options)),
      samples_(std::min(options_.samples, set_->size() - options_.first)) {
  TORCH_CHECK(samples_ > 0, "ValidationLoss: no held-out samples");
  TORCH_CHECK(!options_.sigmas.empty(), "ValidationLoss: no noise levels");
  TORCH_CHECK(options_.batch_size > 0, "ValidationLoss: batch size must be positive");
}

ValidationResult ValidationLoss::evaluate(model::DiT& dit, at::Device device, ProcessGroup* group,
                                          int64_t rank, int64_t world_size) const {
  at::NoGradGuard no_grad;
  const bool was_training = dit->is_training();
  dit->eval();
  const auto levels = static_cast<int64_t>(options_.sigmas.size());
  std::vector<double> sums(static_cast<std::size_t>(levels), 0.0);
  std::vector<int64_t> mine;
  for (int64_t i = rank; i < samples_; i += world_size) mine.push_back(i);
  for (std::size_t start = 0; start < mine.size(); start += options_.batch_size) {
    const std::size_t end = std::min(mine.size(), start + options_.batch_size);
    const std::vector<int64_t> held_out(mine.begin() + start, mine.begin() + end);
    std::vector<int64_t> indices;
    for (const int64_t i : held_out) indices.push_back(options_.first + i);
    const auto batch = data::collate(*set_, indices, held_out);
    const auto x = batch.latents.to(device), y = batch.captions.to(device);
    for (int64_t s = 0; s < levels; ++s) {
      const double sigma = options_.sigmas[s];
      std::vector<at::Tensor> noise;
      for (const int64_t i : held_out) {
        auto generator =
            at::make_generator<at::CPUGeneratorImpl>(validation_noise_seed(options_.seed, i, sigma));
        noise.push_back(at::randn(x.sizes().slice(1), generator));
      }
      const auto sigmas = at::full({x.size(0), 1, 1, 1}, sigma, x.options());
      at::Tensor losses;  // (B)
      {
        nn::AutocastGuard autocast(device.type(), at::kBFloat16, options_.bf16);
        losses = diffusion::edm_loss_at_sigma(dit, x, y, sigmas, at::stack(noise).to(device),
                                              options_.edm);
      }
      sums[s] += losses.to(at::kDouble).sum().item<double>();
    }
  }
  dit->train(was_training);
  auto total = at::tensor(sums, at::kDouble);
  if (group != nullptr) {
    total = total.to(device);  // NCCL: on the GPU
    group->all_reduce(total, "all-reduce of the validation loss");
    total = total.cpu();
  }
  ValidationResult result;
  for (int64_t s = 0; s < levels; ++s) {
    result.per_sigma.push_back(total[s].item<double>() / static_cast<double>(samples_));
  }
  result.loss = std::accumulate(result.per_sigma.begin(), result.per_sigma.end(), 0.0) /
                static_cast<double>(levels);
  return result;
}

}  // namespace microdit::train
