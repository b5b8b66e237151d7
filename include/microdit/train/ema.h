// Exponential moving average of the model weights with mosaicml Composer's semantics: at the
// first update whose global step is >= start_step the EMA copies the weights (so a stage that
// continues past the start copies at once); every later update sets
// ema = s * ema + (1 - s) * w, parameters and buffers alike. Once started (or loaded from a
// checkpoint) it averages at every update, whatever the step.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "microdit/io/tensor_map.h"

namespace microdit::train {

class EMA {
 public:
  EMA(double smoothing, int64_t start_step);

  // Call after each optimizer step with the global step counter after that step.
  // Floating-point tensors are averaged; integer buffers (counters) are copied.
  void update(const torch::nn::Module& model, int64_t step);

  // True once the weights have been copied (by update or load_state).
  bool active() const { return !ema_.empty(); }
  double smoothing() const { return smoothing_; }
  int64_t start_step() const { return start_step_; }
  // A continued stage carries the EMA weights over and applies its own smoothing.
  void set_smoothing(double smoothing);

  // The averaged tensors under the model's state-dict names; empty while inactive.
  const io::TensorMap& state() const { return ema_; }
  // Takes deep copies of `tensors` (an empty map makes the EMA inactive again).
  void load_state(const io::TensorMap& tensors);
  // Loads the averaged weights into `model` (strict: names and shapes must match).
  void copy_to(torch::nn::Module& model) const;

 private:
  double smoothing_;
  int64_t start_step_;
  io::TensorMap ema_;
};

// While one lives, `model`'s parameters and buffers hold the EMA's tensors (their data swapped,
// not copied: a stage-4 XL model has no room for a second weight set); the destructor puts the
// model's own back. Sample grids and validation losses of the EMA weights run through it. The
// EMA must be active and the model must not train meanwhile.
class EMAWeightsInPlace {
 public:
  EMAWeightsInPlace(torch::nn::Module& model, const EMA& ema);
  ~EMAWeightsInPlace();
  EMAWeightsInPlace(const EMAWeightsInPlace&) = delete;
  EMAWeightsInPlace& operator=(const EMAWeightsInPlace&) = delete;

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> own_;  // (the model's tensor, its own data)
};

}  // namespace microdit::train
