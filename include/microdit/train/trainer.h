// The training loop of `microdit-train`: the official recipe's step (EDM loss with deferred
// masking, gradient accumulation from micro-batch to batch, clipping, AdamW, EMA) over a
// deterministic sample stream, with checkpoints, exact resume, stage chaining, progress, metrics,
// TensorBoard and sample grids.
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "microdit/data/prompt_match.h"
#include "microdit/model/flops.h"
#include "microdit/model/microdit.h"
#include "microdit/nn/execution.h"
#include "microdit/train/config.h"
#include "microdit/train/launch_env.h"
#include "microdit/train/train_step.h"

namespace microdit::train {

struct TrainerOptions {
  bool resume = false;  // continue from the newest checkpoint in run.dir
  // Called after every optimizer step with the new global step and its loss (tests, tools).
  std::function<void(int64_t step, double loss)> on_step;
  // This process's place in a multi-process run (read_launch_env() in microdit-train); the
  // default is a world of one.
  LaunchEnv launch;
  // false: nothing written to disk (no config.yaml, checkpoints, metrics, TensorBoard or sample
  // grids), as microdit-bench runs the trainer; progress is still logged.
  bool write_files = true;
  // Stop after this many steps of this run (0: at optim.steps); the schedule still spans
  // optim.steps.
  int64_t max_steps = 0;
};

struct TrainResult {
  int64_t final_step = 0;
  bool stopped_by_signal = false;  // SIGTERM/SIGINT: checkpoint written, clean exit
  // Built-in data: how the final sample grid matches its prompts (colours, shape, both).
  std::optional<data::PromptMatch> prompt_match;
  std::vector<double> losses;  // loss of each step this run performed
};

class Trainer {
 public:
  Trainer(TrainConfig config, TrainerOptions options = {});
  ~Trainer();
  TrainResult run();
  // The trained model; after run() its parameters' .grad hold the last step's gradient
  // (all-reduced in a multi-process run; released with dist.zero_stage 2).
  model::DiT& model();
  const at::Device& device() const;
  const nn::Execution& execution() const;  // optim.execution resolved for the device
  // The training step the run uses, and micro-batch m of the next step as the input path
  // prepares it (on the host): microdit-bench times the step alone on these.
  TrainStep& step();
  MicroBatchInput next_input(int64_t m) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// What one training step of `config` computes, for model/flops.h: the global batch, the mask or
// the route, and `caption_tokens` (the data's caption length).
model::StepShape training_step_shape(const TrainConfig& config, int64_t caption_tokens);
// The caption length the config names (data.builtin_caption_len or data.caption_tokens); the
// trainer uses the data's own.
int64_t configured_caption_tokens(const TrainConfig& config);

// Thrown when a step's loss is not finite; names the step and the last good checkpoint.
struct NonFiniteLoss : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace microdit::train
