#include "microdit/train/captured_step.h"

#include <c10/util/Exception.h>

#include "microdit/train/optimizer.h"

namespace microdit::train {

CapturedStep::CapturedStep(model::DiT& dit, torch::optim::Optimizer& optimizer,
                           const at::Tensor& x0, const at::Tensor& y,
                           const TrainStepOptions& options, int64_t warmup) {
  TORCH_CHECK(cuda_graphs_built(), "CUDA graphs need a CUDA build of LibTorch");
  TORCH_CHECK(x0.is_cuda() && y.is_cuda(), "a captured step needs CUDA inputs");
  const auto* adamw = dynamic_cast<const ScaledAdamW*>(&optimizer);
  // The unfused AdamW computes its bias corrections on the host: a graph would replay the first.
  TORCH_CHECK(adamw != nullptr && adamw->fused(), "a captured step needs the fused AdamW");
  // The warm-up also moves AdamW's step counts to the device, which the graph then advances.
  TORCH_CHECK(warmup >= 1, "a captured step needs at least one warm-up step");
  graph_ = std::make_unique<StepGraph>(x0.device());
  auto step = [&] { result_ = train_step(dit, optimizer, x0, y, options); };
  for (int64_t i = 0; i < warmup; ++i) graph_->warm_up(step);
  graph_->capture(step);
}

CapturedStep::~CapturedStep() = default;

TrainStepResult CapturedStep::replay() {
  graph_->replay();
  return result_;
}

}  // namespace microdit::train
