#include "microdit/train/train_step.h"

#include <c10/util/Exception.h>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/model/masking.h"
#include "microdit/model/token_route.h"
#include "microdit/nn/autocast.h"
#include "microdit/train/gradient_buckets.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/sharded_adamw.h"
#include "microdit/train/step_graph.h"

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

TrainStep::TrainStep(model::DiT dit, TrainStepOptimizer optimizer, TrainStepOptions options)
    : dit_(std::move(dit)), opt_(optimizer), options_(std::move(options)) {
  TORCH_CHECK((opt_.adamw == nullptr) != (opt_.sharded == nullptr),
              "a training step needs one optimizer: AdamW or the sharded AdamW");
  TORCH_CHECK(options_.micro_batches >= 1 && options_.batch_size >= options_.micro_batches,
              "a batch of ", options_.batch_size, " does not split into ", options_.micro_batches,
              " micro-batches");
  if (!options_.cuda_graph) return;
  graph_ = std::make_unique<StepGraph>(options_.device);  // refuses a build or device without CUDA
  // The unfused AdamW computes its bias corrections on the host: a graph would replay the first.
  auto* adamw = dynamic_cast<ScaledAdamW*>(opt_.adamw);
  TORCH_CHECK(adamw != nullptr && adamw->fused(), "a captured step needs the fused AdamW");
  adamw->keep_learning_rates_on_device();
}

TrainStep::~TrainStep() = default;

// Returns the micro-batch's loss on the device, unsynchronised: the step reads it back once.
at::Tensor TrainStep::micro_batch(MicroBatchInput input, bool last) {
  const auto& draws = input.draws;
  // Asynchronous from pinned memory on CUDA (PyTorch's pinned allocator keeps the host buffers
  // until the copies are done); plain copies on the CPU; none for inputs already on the device.
  auto to_device = [&](const at::Tensor& t) {
    return t.to(options_.device, /*non_blocking=*/true);
  };
  auto x = to_device(input.batch.latents);
  auto y = to_device(input.batch.captions) * to_device(draws.keep_caption).view({-1, 1, 1, 1});
  std::optional<model::TokenMask> mask;
  std::optional<model::TokenRoute> route;
  if (options_.mask_ratio > 0) {
    mask = model::mask_from_noise(to_device(draws.mask_noise), options_.mask_ratio);
  } else if (options_.route_ratio > 0) {
    route = model::route_from_noise(to_device(draws.mask_noise), options_.route_ratio,
                                    options_.route_start, options_.route_end);
  }
  at::Tensor loss;
  {
    nn::AutocastGuard autocast(options_.device.type(), at::kBFloat16, options_.bf16);
    loss = diffusion::edm_loss_per_sample(dit_, x, y,
                                          {to_device(draws.rnd_normal), to_device(draws.noise)},
                                          options_.edm, mask ? &*mask : nullptr,
                                          route ? &*route : nullptr)
               .sum() /
           static_cast<double>(options_.batch_size);
  }
  if (last && opt_.buckets) opt_.buckets->arm();
  if (last && opt_.sharded) opt_.sharded->buckets().arm();  // reduce-scatters overlap this backward
  loss.backward();
  return loss.detach();
}

// The step's micro-batches, forward and backward, and the all-reduce; returns the step's loss.
at::Tensor TrainStep::forward_backward(const InputSource& input) {
  at::Tensor step_loss;
  for (int64_t m = 0; m < options_.micro_batches; ++m) {
    auto part = micro_batch(input(m), m + 1 == options_.micro_batches);
    step_loss = m == 0 ? part : step_loss + part;
  }
  if (opt_.buckets) opt_.buckets->finish();
  return step_loss;
}

// Clipping and AdamW; returns the gradients' global norm before clipping.
at::Tensor TrainStep::update() {
  if (opt_.sharded) return opt_.sharded->step(options_.clip_norm);
  return clip_and_step(dit_->parameters(), *opt_.adamw, options_.clip_norm);
}

TrainStepResult TrainStep::run(const InputSource& input, const LossCheck& check) {
  if (graph_) return graphed(input, check);
  // The module's zero_grad, not the optimizer's: torch::optim detaches each gradient in place,
  // which a gradient that is a view of its all-reduced bucket (GradientBuckets) refuses.
  dit_->zero_grad(/*set_to_none=*/true);
  auto loss = forward_backward(input);
  if (check) check(loss);
  return {loss, update()};
}

// With several processes the gradient buckets' all-reduces (NCCL) are captured with the step:
// every rank captures the same step, so the replays run the same collectives in the same order.
TrainStepResult TrainStep::graphed(const InputSource& input, const LossCheck& check) {
  for (int64_t m = 0; m < options_.micro_batches; ++m) {
    auto next = input(m);
    if (static_inputs_.size() <= static_cast<std::size_t>(m)) {
      for (at::Tensor* t : next.tensors()) *t = t->to(options_.device, /*non_blocking=*/true);
      static_inputs_.push_back(std::move(next));
    } else {
      const auto to = static_inputs_[m].tensors(), from = next.tensors();
      for (std::size_t i = 0; i < to.size(); ++i) to[i]->copy_(*from[i], /*non_blocking=*/true);
    }
  }
  auto work = [&] {
    graph_result_.loss = forward_backward([&](int64_t m) { return static_inputs_[m]; });
    graph_result_.grad_norm = update();
  };
  if (warmups_left_ > 0) {
    --warmups_left_;
    dit_->zero_grad(/*set_to_none=*/true);
    graph_->warm_up(work);
  } else if (!graph_->captured()) {
    // The capture's gradients come from the graph's memory; replays rewrite them in place.
    dit_->zero_grad(/*set_to_none=*/true);
    graph_->capture(work);  // runs AdamW's host side once: its step counts are this step's
    graph_->replay();
  } else {
    graph_->replay();
    static_cast<ScaledAdamW&>(*opt_.adamw).count_replayed_step();
  }
  if (check) check(graph_result_.loss);
  return graph_result_;
}

}  // namespace microdit::train
