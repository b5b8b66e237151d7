#include "microdit/train/captured_step.h"

#include <c10/util/Exception.h>

#include "microdit/train/optimizer.h"
#include "microdit/util/device.h"

#ifdef MICRODIT_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace microdit::train {

bool cuda_graphs_built() {
#ifdef MICRODIT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifdef MICRODIT_WITH_CUDA
struct CapturedStep::Graph {
  at::cuda::CUDAGraph graph;
};

namespace {
// Work queued on `to` waits for what is queued on `from` so far.
void order(const c10::cuda::CUDAStream& from, const c10::cuda::CUDAStream& to) {
  at::cuda::CUDAEvent event;
  event.record(from);
  event.block(to);
}
}  // namespace
#else
struct CapturedStep::Graph {};
#endif

CapturedStep::CapturedStep(model::DiT& dit, torch::optim::Optimizer& optimizer,
                           const at::Tensor& x0, const at::Tensor& y,
                           const TrainStepOptions& options, int64_t warmup) {
  TORCH_CHECK(cuda_graphs_built(), "CUDA graphs need a CUDA build of LibTorch");
  TORCH_CHECK(x0.is_cuda() && y.is_cuda(), "a captured step needs CUDA inputs");
  const auto* adamw = dynamic_cast<const ScaledAdamW*>(&optimizer);
  // The unfused AdamW computes its bias corrections on the host: a graph would replay the first.
  TORCH_CHECK(adamw != nullptr && adamw->fused(), "a captured step needs the fused AdamW");
  TORCH_CHECK(options.gradient_sync == nullptr,
              "a captured step cannot hold the data-parallel gradient sync");
  // The warm-up also moves AdamW's step counts to the device, which the graph then advances.
  TORCH_CHECK(warmup >= 1, "a captured step needs at least one warm-up step");
#ifdef MICRODIT_WITH_CUDA
  graph_ = std::make_unique<Graph>();
  const c10::cuda::CUDAGuard device_guard(x0.device());
  const auto main = c10::cuda::getCurrentCUDAStream();
  const auto side = c10::cuda::getStreamFromPool();
  order(main, side);
  {
    const c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int64_t i = 0; i < warmup; ++i) train_step(dit, optimizer, x0, y, options);
    // The graph's memory pool starts from the blocks the warm-up steps leave cached.
    side.synchronize();
    util::empty_cache(x0.device());
    graph_->graph.capture_begin();
    result_ = train_step(dit, optimizer, x0, y, options);
    graph_->graph.capture_end();
  }
  order(side, main);
#endif
}

CapturedStep::~CapturedStep() = default;

TrainStepResult CapturedStep::replay() {
#ifdef MICRODIT_WITH_CUDA
  graph_->graph.replay();
#endif
  return result_;
}

}  // namespace microdit::train
