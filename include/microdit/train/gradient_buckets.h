// Data-parallel gradient synchronisation as PyTorch's DistributedDataParallel does it (Li et al.
// 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training"): parameters
// are grouped into buckets of about `bucket_mb` megabytes in reverse order of registration (the
// order backward produces their gradients); as soon as every gradient of a bucket has been
// accumulated, the bucket is flattened and its collective starts while backward goes on:
//   all_reduce      (DDP) after finish() each .grad is a view of its summed bucket
//   reduce_scatter  (ZeRO-2, sharded_adamw.h) the bucket, padded to a multiple of the world size
//                   W, is summed and scattered: rank r keeps elements [r n/W, (r+1) n/W) of it
//                   (shard(b)); the full gradients are released as soon as the bucket is copied
//
// Only the backward after arm() synchronises: with gradient accumulation the earlier
// micro-batches accumulate locally (DDP's no_sync). Buckets start in index order on every rank,
// as matching collectives must. The loss is already divided by the global batch, so the sum over
// ranks is the gradient of the global batch (no averaging).
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <vector>

#include "microdit/train/process_group.h"

namespace microdit::train {

enum class BucketReduction { all_reduce, reduce_scatter };

class GradientBuckets {
 public:
  GradientBuckets(std::vector<at::Tensor> parameters, ProcessGroup& group, double bucket_mb = 25,
                  BucketReduction reduction = BucketReduction::all_reduce);
  ~GradientBuckets();  // removes the hooks
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  void arm();     // the next backward is the step's last: reduce its gradients
  // Starts the buckets not started yet from .grad (missing gradients count as 0) and waits for
  // all of them.
  void finish();

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Indices of bucket b's parameters, in the order of its flattened layout.
  const std::vector<int64_t>& bucket_params(int64_t b) const { return buckets_[b].params; }
  int64_t bucket_elements(int64_t b) const { return buckets_[b].elements; }  // unpadded
  int64_t shard_elements(int64_t b) const;  // padded elements / W
  // reduce_scatter: this rank's summed shard of bucket b after finish(), (shard_elements(b)).
  const at::Tensor& shard(int64_t b) const { return buckets_[b].shard; }

 private:
  struct Bucket {
    std::vector<int64_t> params;  // indices into parameters_
    int64_t elements = 0;
    int64_t pending = 0;  // gradients still to be accumulated this step
    at::Tensor flat;      // the bucket's gradients, concatenated (and padded)
    at::Tensor shard;     // reduce_scatter: this rank's part of the sum
    c10::intrusive_ptr<c10d::Work> work;
  };

  void reset_round();  // under mutex_
  void on_gradient_ready(int64_t param);
  void start_ready_buckets();  // under mutex_
  void start(int64_t b);

  std::vector<at::Tensor> parameters_;
  ProcessGroup& group_;
  BucketReduction reduction_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_of_;  // parameter index -> bucket index
  std::mutex mutex_;                // hooks may run on autograd's device threads
  bool armed_ = false;
  int64_t next_bucket_ = 0;  // buckets start in order
};

}  // namespace microdit::train
