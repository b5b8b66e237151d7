#include "microdit/train/train_step.h"

#include "microdit/diffusion/edm_loss.h"
#include "microdit/model/masking.h"
#include "microdit/nn/autocast.h"

namespace microdit::train {

at::Tensor clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return at::zeros({});
  auto norms = at::_foreach_norm(grads, 2);
  auto total = at::linalg_vector_norm(at::stack(norms), 2);
  if (max_norm > 0) {
    // As torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (total + 1e-6)).
    auto coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
    at::_foreach_mul_(grads, coef);
  }
  return total;
}

TrainStepResult train_step(model::DiT& dit, torch::optim::Optimizer& optimizer,
                           const at::Tensor& x0, const at::Tensor& y,
                           const TrainStepOptions& options,
                           std::optional<at::Generator> generator) {
  const auto device = x0.device();
  auto draws = diffusion::sample_loss_noise(x0, generator);
  std::optional<model::TokenMask> mask;
  if (options.mask_ratio > 0) {
    mask = model::sample_mask(x0.size(0), dit->config.num_patches(), options.mask_ratio, generator,
                              device);
  }
  at::Tensor loss;
  {
    nn::AutocastGuard autocast(device.type(), at::kBFloat16,
                               options.bf16_autocast && device.is_cuda());
    loss = diffusion::edm_loss(dit, x0, y, draws, options.edm, mask ? &*mask : nullptr);
  }
  optimizer.zero_grad(/*set_to_none=*/true);
  loss.backward();
  auto grad_norm = clip_grad_norm(dit->parameters(), options.clip_norm);
  optimizer.step();
  return {loss.detach(), grad_norm};
}

}  // namespace microdit::train
