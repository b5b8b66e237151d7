// One optimisation step of MicroDiT training, as the official recipe runs it, and the only one:
// microdit-train (the Trainer) and microdit-bench both run it. Per micro-batch: the EDM loss
// (masked when mask_ratio > 0) under bf16 autocast where asked, its backward (gradients
// accumulate from micro-batch to batch); then the data-parallel gradient sync, global-norm
// clipping and AdamW. Every random draw comes with the inputs (per sample, train/sample_draws.h),
// so the step is the same function however the batch is split. With cuda_graph the whole step is
// captured once as a CUDA graph and replayed from static copies of the inputs on the device.
#pragma once
#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <optional>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/model/microdit.h"
#include "microdit/train/micro_batch_input.h"

namespace microdit::train {

class GradientBuckets;
class ShardedAdamW;
class StepGraph;

struct TrainStepOptions {
  at::Device device{at::kCPU};
  int64_t batch_size = 1;     // the global batch: each sample's loss counts 1 / batch_size
  int64_t micro_batches = 1;  // per process and step
  double mask_ratio = 0;
  // Token routing (model/token_route.h) from the same per-sample mask draws; ratio 0: off.
  double route_ratio = 0;
  int64_t route_start = 0, route_end = -1;
  double clip_norm = 0;  // global gradient norm bound (0: off)
  bool bf16 = false;     // autocast to bf16
  // The step (forward, backward, sync, clipping, AdamW) as a CUDA graph: two eager warm-up steps
  // (AdamW creates its state and moves its step counts to the device), then one capture, then
  // replays. Needs CUDA and the fused AdamW; the learning rate is read from the device.
  bool cuda_graph = false;
  diffusion::EDMConfig edm;
};

// The optimizer side of a step; exactly one of adamw and sharded is set.
struct TrainStepOptimizer {
  torch::optim::AdamW* adamw = nullptr;
  ShardedAdamW* sharded = nullptr;     // dist.zero_stage 2: reduce-scatter, sharded AdamW
  GradientBuckets* buckets = nullptr;  // data parallel (dist.zero_stage 0): bucketed all-reduce
};

struct TrainStepResult {
  at::Tensor loss;       // scalar on the device, not synchronised
  at::Tensor grad_norm;  // scalar on the device, before clipping
};

class TrainStep {
 public:
  // Micro-batch m of the step about to run (m < micro_batches), on the host or the device.
  using InputSource = std::function<MicroBatchInput(int64_t m)>;
  // Sees the step's loss before the weights change (eager steps; a graphed step has updated them
  // already): throwing leaves the weights as they were.
  using LossCheck = std::function<void(const at::Tensor& loss)>;

  TrainStep(model::DiT dit, TrainStepOptimizer optimizer, TrainStepOptions options);
  ~TrainStep();
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  TrainStepResult run(const InputSource& input, const LossCheck& check = {});
  const TrainStepOptions& options() const { return options_; }

 private:
  at::Tensor micro_batch(MicroBatchInput input, bool last);
  at::Tensor forward_backward(const InputSource& input);
  at::Tensor update();
  TrainStepResult graphed(const InputSource& input, const LossCheck& check);

  model::DiT dit_;
  TrainStepOptimizer opt_;
  TrainStepOptions options_;
  // cuda_graph: the graph and its static inputs on the device, one per micro-batch.
  std::unique_ptr<StepGraph> graph_;
  std::vector<MicroBatchInput> static_inputs_;
  TrainStepResult graph_result_;  // rewritten by each replay
  int64_t warmups_left_ = 2;
};

// The factor min(1, max_norm / (norm + 1e-6)) of torch.nn.utils.clip_grad_norm_ as the number
// it divides by: a float32 scalar max(1, (norm + 1e-6) / max_norm), for a fused AdamW.
at::Tensor clipping_divisor(const at::Tensor& norm, double max_norm);

// Clips `grads` to max_norm given their global norm (max_norm <= 0: no clipping), then
// optimizer.step(), without a host synchronisation. A fused ScaledAdamW divides the gradients by
// clipping_divisor inside its kernel (one pass over all gradients fewer; they end clipped all
// the same); any other optimizer gets them scaled in place first.
void clip_to_norm_and_step(const std::vector<at::Tensor>& grads, const at::Tensor& norm,
                           torch::optim::Optimizer& optimizer, double max_norm);

// The global L2 norm of the parameters' gradients, then clip_to_norm_and_step; returns the norm
// before clipping.
at::Tensor clip_and_step(const std::vector<at::Tensor>& parameters,
                         torch::optim::Optimizer& optimizer, double max_norm);

}  // namespace microdit::train
