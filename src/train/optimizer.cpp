#include "microdit/train/optimizer.h"

#include <c10/util/Exception.h>
#include <c10/util/ScopeExit.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <stdexcept>

namespace microdit::train {

bool is_moe_expert_weight(const std::string& name, const at::Tensor& parameter) {
  auto ends_with = [&](std::string_view suffix) {
    // "mlp.w1" at the top level, or "<prefix>.mlp.w1".
    return name == suffix.substr(1) || name.ends_with(suffix);
  };
  return parameter.dim() == 3 && (ends_with(".mlp.w1") || ends_with(".mlp.w2"));
}

ScaledAdamW::ScaledAdamW(const std::vector<torch::optim::OptimizerParamGroup>& groups,
                         const torch::optim::AdamWOptions& defaults, std::vector<double> lr_scales,
                         bool fused)
    : torch::optim::AdamW(groups, defaults), lr_scales_(std::move(lr_scales)), fused_(fused) {
  if (lr_scales_.size() != groups.size()) {
    throw std::invalid_argument(c10::str("ScaledAdamW: ", lr_scales_.size(), " lr scales for ",
                                         groups.size(), " parameter groups"));
  }
}

double ScaledAdamW::lr_scale(std::size_t group) const {
  return group < lr_scales_.size() ? lr_scales_[group] : 1.0;
}

at::Tensor ScaledAdamW::step(LossClosure closure) {
  if (!fused_) return torch::optim::AdamW::step(closure);
  at::NoGradGuard no_grad;
  // The divisor is for this step only, also when it fails.
  const auto forget_divisor = c10::make_scope_exit([this] { gradient_divisor_.reset(); });
  at::Tensor loss = closure ? closure() : at::Tensor();
  for (std::size_t i = 0; i < param_groups().size(); ++i) fused_step(param_groups()[i], i);
  return loss;
}

void ScaledAdamW::divide_next_gradients_by(at::Tensor divisor) {
  TORCH_CHECK(fused_, "dividing the gradients inside the step needs the fused AdamW");
  TORCH_CHECK(divisor.numel() == 1 && divisor.scalar_type() == at::kFloat,
              "the gradient divisor must be one float32 value, got ", divisor.sizes(), " ",
              divisor.scalar_type());
  gradient_divisor_ = std::move(divisor);
}

at::Tensor ScaledAdamW::device_step_count(std::size_t index, int64_t count,
                                          const at::Device& device) {
  if (step_counts_.size() <= index) step_counts_.resize(index + 1);
  auto& kept = step_counts_[index];
  if (kept.tensor.defined() && kept.count + 1 == count && kept.tensor.device() == device) {
    kept.tensor.add_(1);
  } else {
    // From page-locked memory and asynchronous: a copy from pageable memory makes the host wait
    // for the backward pass queued before it.
    auto host = at::full({}, static_cast<float>(count));
    if (device.is_cuda()) host = host.pin_memory();
    kept.tensor = host.to(device, /*non_blocking=*/true);
  }
  kept.count = count;
  return kept.tensor;
}

void ScaledAdamW::fused_step(torch::optim::OptimizerParamGroup& group, std::size_t index) {
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  std::vector<int64_t> step_counts;
  for (auto& p : group.params()) {
    if (!p.grad().defined()) continue;
    auto& slot = state()[p.unsafeGetTensorImpl()];
    if (!slot) {
      auto fresh = std::make_unique<torch::optim::AdamWParamState>();
      fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
      fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
      slot = std::move(fresh);
    }
    auto& s = static_cast<torch::optim::AdamWParamState&>(*slot);
    s.step(s.step() + 1);
    params.push_back(p);
    grads.push_back(p.grad());
    exp_avgs.push_back(s.exp_avg());
    exp_avg_sqs.push_back(s.exp_avg_sq());
    step_counts.push_back(s.step());
  }
  if (params.empty()) return;
  // The kernel reads each (already incremented) step count as a float tensor; the group's
  // parameters share one count, unless some were added to it later.
  const auto device = params.front().device();
  std::vector<at::Tensor> steps;
  if (std::all_of(step_counts.begin(), step_counts.end(),
                  [&](int64_t c) { return c == step_counts.front(); })) {
    steps.assign(params.size(), device_step_count(index, step_counts.front(), device));
  } else {
    for (const auto c : step_counts) steps.push_back(at::full({}, static_cast<float>(c), device));
  }
  const auto [beta1, beta2] = o.betas();
  if (index < device_lrs_.size()) {
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps,
                      device_lrs_[index], beta1, beta2, o.weight_decay(), o.eps(),
                      /*amsgrad=*/false, /*maximize=*/false, gradient_divisor_);
  } else {
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, o.lr(),
                      beta1, beta2, o.weight_decay(), o.eps(), /*amsgrad=*/false,
                      /*maximize=*/false, gradient_divisor_);
  }
}

void ScaledAdamW::keep_learning_rates_on_device() {
  TORCH_CHECK(fused_, "learning rates on the device need the fused AdamW");
  device_lrs_.clear();
  for (auto& group : param_groups()) {
    TORCH_CHECK(!group.params().empty(), "an empty AdamW parameter group");
    const auto& p = group.params().front();
    // The CUDA kernel reads a float32 and rounds a number to float32 too; the CPU kernel reads
    // any dtype as a double and uses a number as it is.
    const auto dtype = p.is_cuda() ? at::kFloat : at::kDouble;
    device_lrs_.push_back(at::zeros({}, p.options().dtype(dtype)));
  }
  write_device_learning_rates();
}

void ScaledAdamW::write_device_learning_rates() {
  for (std::size_t i = 0; i < device_lrs_.size(); ++i) {
    device_lrs_[i].fill_(param_groups()[i].options().get_lr());
  }
}

void ScaledAdamW::count_replayed_step() {
  for (std::size_t i = 0; i < param_groups().size(); ++i) {
    for (const auto& p : param_groups()[i].params()) {
      const auto it = state().find(p.unsafeGetTensorImpl());
      if (!p.grad().defined() || it == state().end()) continue;  // as fused_step skips them
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      s.step(s.step() + 1);
    }
    if (i < step_counts_.size() && step_counts_[i].tensor.defined()) ++step_counts_[i].count;
  }
}

std::unique_ptr<torch::optim::AdamW> make_adamw(
    const std::vector<std::pair<std::string, at::Tensor>>& named_params,
    const AdamWSettings& settings) {
  if (named_params.empty()) throw std::invalid_argument("make_adamw: no parameters to optimize");
  if (settings.moe_lr_scale < 0) {
    throw std::invalid_argument(
        c10::str("make_adamw: moe_lr_scale ", settings.moe_lr_scale, " is negative"));
  }
  const bool split = settings.moe_lr_scale != 1.0;
  std::vector<at::Tensor> base, experts;
  for (const auto& [name, parameter] : named_params) {
    (split && is_moe_expert_weight(name, parameter) ? experts : base).push_back(parameter);
  }
  return make_adamw(std::move(base), std::move(experts), settings);
}

std::unique_ptr<torch::optim::AdamW> make_adamw(std::vector<at::Tensor> base,
                                                std::vector<at::Tensor> experts,
                                                const AdamWSettings& settings) {
  if (base.empty() && experts.empty()) {
    throw std::invalid_argument("make_adamw: no parameters to optimize");
  }
  auto options = torch::optim::AdamWOptions(settings.lr)
                     .betas({settings.beta1, settings.beta2})
                     .eps(settings.eps)
                     .weight_decay(settings.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<double> scales;
  if (!base.empty()) {
    groups.emplace_back(std::move(base), std::make_unique<torch::optim::AdamWOptions>(options));
    scales.push_back(1.0);
  }
  if (!experts.empty()) {
    auto expert_options = options;
    expert_options.lr(settings.lr * settings.moe_lr_scale);
    groups.emplace_back(std::move(experts),
                        std::make_unique<torch::optim::AdamWOptions>(expert_options));
    scales.push_back(settings.moe_lr_scale);
  }
  return std::make_unique<ScaledAdamW>(groups, options, std::move(scales), settings.fused);
}

double lr_scale(const torch::optim::Optimizer& optimizer, std::size_t group) {
  const auto* scaled = dynamic_cast<const ScaledAdamW*>(&optimizer);
  return scaled ? scaled->lr_scale(group) : 1.0;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double base_lr) {
  auto& groups = optimizer.param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    groups[g].options().set_lr(base_lr * lr_scale(optimizer, g));
  }
  if (auto* scaled = dynamic_cast<ScaledAdamW*>(&optimizer)) scaled->write_device_learning_rates();
}

}  // namespace microdit::train
