#include "microdit/train/ema.h"

#include <c10/util/StringUtil.h>

#include <string>
#include <stdexcept>
#include <vector>

#include "microdit/io/state_dict.h"

namespace microdit::train {

EMA::EMA(double smoothing, int64_t start_step) : start_step_(start_step) {
  set_smoothing(smoothing);
}

void EMA::set_smoothing(double smoothing) {
  if (!(smoothing >= 0.0 && smoothing <= 1.0)) {
    throw std::invalid_argument(c10::str("EMA smoothing ", smoothing, " is not in [0, 1]"));
  }
  smoothing_ = smoothing;
}

void EMA::update(const torch::nn::Module& model, int64_t step) {
  if (!active() && step < start_step_) return;
  const io::TensorMap weights = io::state_dict(model);
  at::NoGradGuard no_grad;
  if (!active()) {
    for (const auto& [name, tensor] : weights) ema_.emplace(name, tensor.clone());
    return;
  }
  if (weights.size() != ema_.size()) {
    throw std::runtime_error(
        c10::str("EMA holds ", ema_.size(), " tensors, the model has ", weights.size()));
  }
  std::vector<at::Tensor> averaged, current;
  for (const auto& [name, tensor] : weights) {
    auto it = ema_.find(name);
    if (it == ema_.end()) throw std::runtime_error(c10::str("EMA has no tensor ", name));
    at::Tensor& ema = it->second;
    if (!ema.sizes().equals(tensor.sizes())) {
      throw std::runtime_error(c10::str("EMA tensor ", name, " has shape ",
                                        io::shape_string(ema.sizes()), ", the model's has ",
                                        io::shape_string(tensor.sizes())));
    }
    // An EMA loaded from a checkpoint moves to the model's device once.
    if (ema.device() != tensor.device()) ema = ema.to(tensor.device());
    if (!at::isFloatingType(ema.scalar_type())) {
      ema.copy_(tensor);
    } else if (ema.scalar_type() != tensor.scalar_type()) {
      ema.lerp_(tensor.to(ema.scalar_type()), 1.0 - smoothing_);
    } else {
      averaged.push_back(ema);
      current.push_back(tensor);
    }
  }
  // ema + (1 - s) * (w - ema) = s * ema + (1 - s) * w, one fused pass over all tensors.
  if (!averaged.empty()) at::_foreach_lerp_(averaged, current, 1.0 - smoothing_);
}

void EMA::load_state(const io::TensorMap& tensors) {
  io::TensorMap copy;
  for (const auto& [name, tensor] : tensors) copy.emplace(name, tensor.detach().clone());
  ema_ = std::move(copy);
}

void EMA::copy_to(torch::nn::Module& model) const {
  if (!active()) throw std::runtime_error("EMA::copy_to: the EMA has not started yet");
  io::load_state_dict(model, ema_);
}

EMAWeightsInPlace::EMAWeightsInPlace(torch::nn::Module& model, const EMA& ema) {
  if (!ema.active()) throw std::runtime_error("EMAWeightsInPlace: the EMA has not started yet");
  // The module's own tensors (the state dict holds detached aliases, whose data swap would not
  // reach the module).
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    named.emplace_back(item.key(), item.value());
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    named.emplace_back(item.key(), item.value());
  }
  for (const auto& [name, tensor] : named) {
    const auto it = ema.state().find(name);
    if (it == ema.state().end()) throw std::runtime_error(c10::str("EMA has no tensor ", name));
    if (!it->second.sizes().equals(tensor.sizes())) {
      throw std::runtime_error(c10::str("EMA tensor ", name, " has shape ",
                                        io::shape_string(it->second.sizes()), ", the model's has ",
                                        io::shape_string(tensor.sizes())));
    }
  }
  at::NoGradGuard no_grad;
  for (auto& [name, tensor] : named) {
    own_.emplace_back(tensor, tensor.data());
    // A loaded EMA moves to the model's device at its first update; before that, a copy.
    tensor.set_data(ema.state().at(name).to(tensor.device(), tensor.scalar_type()));
  }
}

EMAWeightsInPlace::~EMAWeightsInPlace() {
  at::NoGradGuard no_grad;
  for (auto& [tensor, own] : own_) tensor.set_data(own);
}

}  // namespace microdit::train
