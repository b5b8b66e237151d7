// AdamW with sharded gradients and optimizer state: ZeRO stage 2 (Rajbhandari et al. 2020,
// "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models"), what the official
// configs get from FSDP's SHARD_GRAD_OP.
//
// The parameters are grouped into the buckets of gradient_buckets.h (reverse registration order,
// about bucket_mb each); each bucket's flattened elements, padded to a multiple of the world size
// W, are split into W equal shards and rank r owns shard r of every bucket. A step:
//   1. during the last backward, each finished bucket is reduce-scattered (overlapping the rest
//      of backward) and its full gradients are released, so each rank keeps its shard of the
//      global gradient
//   2. global gradient norm from the shards (one all-reduce), clip
//   3. AdamW on the shards: the moments exist for 1/W of the parameters
//   4. all-gather each bucket's updated shards into every rank's parameters
// A rank's shards are kept as pieces, one per (bucket, parameter) overlap, each in its
// parameter's AdamW group (MoE expert weights may have their own learning rate). Checkpoints
// hold the full moments by parameter name, the same file as an unsharded run: resumable on any
// world size.
//
// Legend: W world size, n_b elements of bucket b, S_b = ceil(n_b / W) shard elements.
#pragma once
#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "microdit/io/tensor_map.h"
#include "microdit/train/gradient_buckets.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/process_group.h"

namespace microdit::train {

class ShardedAdamW {
 public:
  // Throws std::invalid_argument when this rank would own no element (fewer elements than ranks).
  ShardedAdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
               const AdamWSettings& settings, ProcessGroup& group, double bucket_mb = 25);

  // The AdamW over this rank's pieces (for set_learning_rate).
  torch::optim::AdamW& shard_optimizer() { return *optimizer_; }
  // arm() them before the step's last backward so the reduce-scatters overlap it.
  GradientBuckets& buckets() { return *buckets_; }

  // Steps 1-4 (buckets not started during backward are started from .grad now). Returns the
  // global gradient norm before clipping (a float64 scalar on the device, not synchronised);
  // max_norm <= 0: no clipping. The parameters' .grad are released.
  at::Tensor step(double max_norm);

  // Every rank must call these together. The full moments "<name>.exp_avg" / ".exp_avg_sq" (on
  // the CPU; empty before the first step) and AdamW's step count.
  io::TensorMap gather_moments(int64_t& optimizer_step);
  // This rank's shard of full moments (a checkpoint's); throws naming a missing or mis-shaped one.
  void load_moments(const io::TensorMap& moments, int64_t optimizer_step);
  // Copies the parameters' current values into this rank's shards (after loading weights).
  void refresh_from_parameters();

 private:
  struct Piece {
    int64_t param;         // index into params_
    int64_t param_offset;  // first element inside the flattened parameter
    int64_t bucket;
    int64_t shard_offset;  // first element inside this rank's shard of the bucket
    at::Tensor master;     // (len) the optimizer's leaf tensor
  };

  // (S_b) of bucket b from this rank's pieces, zeros where no piece is.
  at::Tensor bucket_shard(int64_t b, const std::function<at::Tensor(const Piece&)>& get) const;
  // Every rank's shard of bucket b gathered into the bucket's full flat layout (W S_b).
  at::Tensor gather_bucket(int64_t b, const std::function<at::Tensor(const Piece&)>& get,
                           const std::string& what);
  void gather_into_parameters();

  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::vector<int64_t> offset_in_bucket_;  // each parameter's first element in its bucket
  ProcessGroup& group_;
  std::unique_ptr<GradientBuckets> buckets_;
  std::vector<Piece> pieces_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
};

}  // namespace microdit::train
