// AdamW with sharded gradients and optimizer state: ZeRO stage 2 (Rajbhandari et al. 2020,
// "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models"), what the official
// configs get from FSDP's SHARD_GRAD_OP.
//
// All parameters, concatenated in registration order and padded to a multiple of the world
// size W, form one flat vector of N elements; rank r owns elements [r N/W, (r+1) N/W). A step:
//   1. reduce-scatter the summed gradients, so each rank holds its shard of the global gradient
//   2. global gradient norm from the shards (one all-reduce), clip
//   3. AdamW on the shard: the moments exist for the shard only (1/W of the memory)
//   4. all-gather the updated shards into every rank's parameters
// The shard is kept as pieces, one per parameter it touches, each in its parameter's AdamW group
// (MoE expert weights may have their own learning rate). Checkpoints hold the full moments by
// parameter name, the same file as an unsharded run: resumable on any world size.
//
// Legend: N padded total elements, W world size, S = N / W shard elements.
#pragma once
#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "microdit/io/tensor_map.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/process_group.h"

namespace microdit::train {

class ShardedAdamW {
 public:
  // Throws std::invalid_argument when there are fewer elements than ranks.
  ShardedAdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
               const AdamWSettings& settings, ProcessGroup& group);

  // The AdamW over this rank's pieces (for set_learning_rate).
  torch::optim::AdamW& shard_optimizer() { return *optimizer_; }

  // Steps 1-4 from the parameters' .grad (the local sums of this rank's micro-batches), which
  // are released after step 1. Returns the global gradient norm before clipping; max_norm <= 0:
  // no clipping.
  double step(double max_norm);

  // Every rank must call these together. The full moments "<name>.exp_avg" / ".exp_avg_sq" (on
  // the CPU; empty before the first step) and AdamW's step count.
  io::TensorMap gather_moments(int64_t& optimizer_step);
  // This rank's shard of full moments (a checkpoint's); throws naming a missing or mis-shaped one.
  void load_moments(const io::TensorMap& moments, int64_t optimizer_step);

  // Copies the parameters' current values into this rank's shard (after loading weights).
  void refresh_from_parameters();

  int64_t shard_elements() const { return shard_; }

 private:
  struct Piece {
    int64_t param;         // index into params_
    int64_t param_offset;  // first element inside the flattened parameter
    int64_t shard_offset;  // first element inside this rank's shard
    at::Tensor master;     // (len) the optimizer's leaf tensor
  };

  at::Tensor flat_gradients() const;  // (N), zeros where a parameter has no gradient
  at::Tensor shard_of(const std::function<at::Tensor(const Piece&)>& get) const;  // (S)
  void gather_into_parameters();

  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::vector<int64_t> offsets_;  // each parameter's first element in the flat vector
  int64_t total_ = 0, shard_ = 0;
  std::vector<Piece> pieces_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  ProcessGroup& group_;
};

}  // namespace microdit::train
