// One training step's GPU work as a CUDA graph: warmed up eagerly on a side stream (libraries
// pick their kernels and workspaces there, which capture cannot do), captured once (nothing
// runs), then replayed: one launch instead of thousands of kernel launches. The work must have
// static shapes, read its inputs from tensors that stay in place, and never wait on the host;
// its outputs are the tensors it left behind at capture, rewritten by each replay. Used by
// train/train_step (optim.cuda_graph).
#pragma once
#include <c10/core/Device.h>

#include <functional>
#include <memory>

namespace microdit::train {

// True when this build can capture CUDA graphs (a CUDA LibTorch).
bool cuda_graphs_built();

class StepGraph {
 public:
  // Throws a c10::Error without a CUDA build or for a device that is not CUDA.
  explicit StepGraph(const c10::Device& device);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs `work` now, on a side stream ordered after and before the current one.
  void warm_up(const std::function<void()>& work);
  // Records `work` without running it (after at least one warm_up).
  void capture(const std::function<void()>& work);
  bool captured() const { return captured_; }
  // Runs the recorded work on the current stream.
  void replay();

 private:
  struct Graph;
  std::unique_ptr<Graph> graph_;
  c10::Device device_;
  bool warmed_up_ = false;
  bool captured_ = false;
};

}  // namespace microdit::train
