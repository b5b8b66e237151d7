// AdamW as the official recipe configures it: weight decay on every parameter (biases and norm
// weights included) in one parameter group, plus an optional learning-rate scale for the
// expert-choice MoE expert weights (the official code's intended, never applied, half lr).
#pragma once

#include <torch/optim/adamw.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace microdit::train {

struct AdamWSettings {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled, on every parameter
  double moe_lr_scale = 1.0;  // lr factor for MoE expert weights; 1.0 keeps a single group
  bool fused = false;         // one multi-tensor kernel per group (at::_fused_adamw_)
};

// True for a FeedForwardECMoe expert weight: a 3-D tensor named "<...>.mlp.w1" or "<...>.mlp.w2"
// ((E, D, F) / (E, F, D)). The dense FeedForward's "mlp.w1.weight" is not one.
bool is_moe_expert_weight(const std::string& name, const at::Tensor& parameter);

// An AdamW that remembers, per parameter group, the factor its learning rate carries relative to
// the base learning rate. LibTorch parameter groups hold options only, so the factors live here,
// in group order; groups added later through add_param_group() count as factor 1.
class ScaledAdamW : public torch::optim::AdamW {
 public:
  ScaledAdamW(const std::vector<torch::optim::OptimizerParamGroup>& groups,
              const torch::optim::AdamWOptions& defaults, std::vector<double> lr_scales,
              bool fused = false);
  double lr_scale(std::size_t group) const;
  bool fused() const { return fused_; }
  // Fused: the same AdamW update by at::_fused_adamw_, one kernel per group instead of a dozen
  // per parameter. The moments live in the usual AdamWParamState, so checkpoints do not change.
  at::Tensor step(LossClosure closure = nullptr) override;

  // Fused, for a captured step: each group's learning rate read by the kernel from a tensor on
  // the parameters' device instead of passed as a number at launch, so replays
  // follow the schedule; set_learning_rate writes them (outside the graph).
  void keep_learning_rates_on_device();
  void write_device_learning_rates();
  // After a captured step's replay, which advanced the device step counts: the host counts
  // (saved in checkpoints) advance the same, as if step() had run.
  void count_replayed_step();

  // Fused: the next step() divides every gradient by `divisor` (a float32 scalar on the
  // parameters' device) inside the AdamW kernel and writes the divided gradient back, as if it
  // had been divided in place before; global-norm clipping without a separate pass over the
  // gradients. Applies to one step only.
  void divide_next_gradients_by(at::Tensor divisor);

 private:
  void fused_step(torch::optim::OptimizerParamGroup& group, std::size_t index);
  at::Tensor device_step_count(std::size_t index, int64_t count, const at::Device& device);

  // A fused group's step count as the float tensor the kernel reads, on the parameters' device,
  // advanced there by one each step (no copy from the host; a captured step advances it at each
  // replay); set again from the host count when that is not the next one (a loaded state).
  struct DeviceStepCount {
    at::Tensor tensor;
    int64_t count = -1;
  };
  std::vector<double> lr_scales_;
  bool fused_;
  std::vector<DeviceStepCount> step_counts_;
  std::vector<at::Tensor> device_lrs_;  // per group, when kept on the device
  std::optional<at::Tensor> gradient_divisor_;  // for the next step only
};

// Groups, in order: [0] every parameter that is not an MoE expert weight (lr scale 1), then, only
// when moe_lr_scale != 1 and such weights exist, [1] the expert weights (lr scale moe_lr_scale);
// an empty group is left out.
// Parameters keep their order from `named_params` inside each group. The returned object is a
// ScaledAdamW. Throws std::invalid_argument for an empty parameter list or a negative scale.
std::unique_ptr<torch::optim::AdamW> make_adamw(
    const std::vector<std::pair<std::string, at::Tensor>>& named_params,
    const AdamWSettings& settings);

// The same AdamW over parameters already split into the two groups (e.g. pieces of parameters,
// whose names and shapes no longer say which group they belong to).
std::unique_ptr<torch::optim::AdamW> make_adamw(std::vector<at::Tensor> base,
                                                std::vector<at::Tensor> experts,
                                                const AdamWSettings& settings);

// The lr factor of `group`: ScaledAdamW's recorded factor, 1 for any other optimizer.
double lr_scale(const torch::optim::Optimizer& optimizer, std::size_t group);

// Sets every group's learning rate to base_lr * lr_scale(optimizer, group), e.g. once per step
// with base_lr = lr * lr_factor(schedule, t).
void set_learning_rate(torch::optim::Optimizer& optimizer, double base_lr);

}  // namespace microdit::train
