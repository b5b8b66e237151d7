#include "microdit/train/train_step.h"

#include "microdit/diffusion/edm_loss.h"
#include "microdit/model/masking.h"
#include "microdit/nn/autocast.h"
#include "microdit/train/gradient_buckets.h"
#include "microdit/train/optimizer.h"

namespace microdit::train {

at::Tensor clipping_divisor(const at::Tensor& norm, double max_norm) {
  return at::clamp_min((norm + 1e-6) / max_norm, 1.0).to(at::kFloat);
}

void clip_to_norm_and_step(const std::vector<at::Tensor>& grads, const at::Tensor& norm,
                           torch::optim::Optimizer& optimizer, double max_norm) {
  if (max_norm > 0 && !grads.empty()) {
    auto* adamw = dynamic_cast<ScaledAdamW*>(&optimizer);
    if (adamw != nullptr && adamw->fused()) {
      adamw->divide_next_gradients_by(clipping_divisor(norm, max_norm));
    } else {
      // As torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)).
      at::_foreach_mul_(grads, at::clamp_max(max_norm / (norm + 1e-6), 1.0));
    }
  }
  optimizer.step();
}

at::Tensor clip_and_step(const std::vector<at::Tensor>& parameters,
                         torch::optim::Optimizer& optimizer, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  auto norm = grads.empty() ? at::zeros({})
                            : at::linalg_vector_norm(at::stack(at::_foreach_norm(grads, 2)), 2);
  clip_to_norm_and_step(grads, norm, optimizer, max_norm);
  return norm;
}

TrainStepResult train_step(model::DiT& dit, torch::optim::Optimizer& optimizer,
                           const at::Tensor& x0, const at::Tensor& y,
                           const TrainStepOptions& options,
                           std::optional<at::Generator> generator) {
  const auto device = x0.device();
  const int64_t batch = x0.size(0);
  TORCH_CHECK(options.micro_batches >= 1 && batch % options.micro_batches == 0, "batch ", batch,
              " does not split into ", options.micro_batches, " equal micro-batches");
  auto draws = diffusion::sample_loss_noise(x0, generator);
  std::optional<model::TokenMask> mask;
  if (options.mask_ratio > 0) {
    mask = model::sample_mask(batch, dit->config.num_patches(), options.mask_ratio, generator,
                              device);
  }
  // The module's zero_grad, not the optimizer's: torch::optim detaches each gradient in place,
  // which a gradient that is a view of its all-reduced bucket (GradientBuckets) refuses.
  dit->zero_grad(/*set_to_none=*/true);
  const int64_t micro = batch / options.micro_batches;
  at::Tensor loss = at::zeros({}, x0.options());
  for (int64_t start = 0; start < batch; start += micro) {
    auto part = [&](const at::Tensor& t) { return t.narrow(0, start, micro); };
    std::optional<model::TokenMask> part_mask;
    if (mask) part_mask = model::TokenMask{part(mask->ids_keep), part(mask->ids_restore),
                                           part(mask->mask)};
    at::Tensor part_loss;
    {
      nn::AutocastGuard autocast(device.type(), at::kBFloat16,
                                 options.bf16_autocast && device.is_cuda());
      part_loss = diffusion::edm_loss_per_sample(dit, part(x0), part(y),
                                                 {part(draws.rnd_normal), part(draws.noise)},
                                                 options.edm, part_mask ? &*part_mask : nullptr)
                      .sum() /
                  static_cast<double>(batch);
    }
    if (options.gradient_sync && start + micro == batch) options.gradient_sync->arm();
    part_loss.backward();
    loss = loss + part_loss.detach();
  }
  if (options.gradient_sync) options.gradient_sync->finish();
  return {loss, clip_and_step(dit->parameters(), optimizer, options.clip_norm)};
}

}  // namespace microdit::train
