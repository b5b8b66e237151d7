#include "microdit/train/step_graph.h"

#include <c10/util/Exception.h>

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
struct StepGraph::Graph {
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
};

namespace {
// Work queued on `to` waits for what is queued on `from` so far.
void order(const c10::cuda::CUDAStream& from, const c10::cuda::CUDAStream& to) {
  at::cuda::CUDAEvent event;
  event.record(from);
  event.block(to);
}

// Runs `work` on `side`, ordered after and before the device's current stream.
void on_side_stream(const c10::Device& device, const c10::cuda::CUDAStream& side,
                    const std::function<void(const c10::cuda::CUDAStream&)>& work) {
  const c10::cuda::CUDAGuard device_guard(device);
  const auto main = c10::cuda::getCurrentCUDAStream();
  order(main, side);
  {
    const c10::cuda::CUDAStreamGuard stream_guard(side);
    work(side);
  }
  order(side, main);
}
}  // namespace
#else
struct StepGraph::Graph {};
#endif

StepGraph::StepGraph(const c10::Device& device) : device_(device) {
  TORCH_CHECK(cuda_graphs_built(), "CUDA graphs need a CUDA build of LibTorch");
  TORCH_CHECK(device.is_cuda(), "a CUDA graph needs a CUDA device, not ", device.str());
#ifdef MICRODIT_WITH_CUDA
  const c10::cuda::CUDAGuard device_guard(device);
  graph_ = std::make_unique<Graph>();
#endif
}

StepGraph::~StepGraph() = default;

void StepGraph::warm_up(const std::function<void()>& work) {
#ifdef MICRODIT_WITH_CUDA
  on_side_stream(device_, graph_->side, [&](const c10::cuda::CUDAStream&) { work(); });
  warmed_up_ = true;
#endif
}

void StepGraph::capture(const std::function<void()>& work) {
  TORCH_CHECK(warmed_up_, "a CUDA graph is captured after at least one warm-up run");
  TORCH_CHECK(!captured_, "this CUDA graph is already captured");
#ifdef MICRODIT_WITH_CUDA
  on_side_stream(device_, graph_->side, [&](const c10::cuda::CUDAStream& side) {
    // The graph's private memory pool cannot take blocks the eager pool keeps cached.
    side.synchronize();
    util::empty_cache(device_);
    // Thread-local: only this thread is held to capture's rules, so the trainer's prefetch
    // thread may go on page-locking the next batches (which global mode would refuse).
    graph_->graph.capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeThreadLocal);
    work();
    graph_->graph.capture_end();
  });
  captured_ = true;
#endif
}

void StepGraph::replay() {
  TORCH_CHECK(captured_, "replay of a CUDA graph that was not captured");
#ifdef MICRODIT_WITH_CUDA
  const c10::cuda::CUDAGuard device_guard(device_);
  graph_->graph.replay();
#endif
}

}  // namespace microdit::train
