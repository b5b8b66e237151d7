// Data-parallel gradient synchronisation as PyTorch's DistributedDataParallel does it (Li et al.
// 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training"): parameters
// are grouped into buckets of about `bucket_mb` megabytes in reverse order of registration (the
// order backward produces their gradients); as soon as every gradient of a bucket has been
// accumulated, the bucket is flattened and its all-reduce starts while backward goes on.
// finish() waits for the sums and writes them back into .grad.
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

class GradientBuckets {
 public:
  GradientBuckets(std::vector<at::Tensor> parameters, ProcessGroup& group, double bucket_mb = 25);
  ~GradientBuckets();  // removes the hooks
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  void arm();     // the next backward is the step's last: all-reduce its gradients
  void finish();  // starts the buckets not started yet (missing gradients count as 0), waits
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<int64_t> params;  // indices into parameters_
    int64_t pending = 0;          // gradients still to be accumulated this step
    at::Tensor flat;              // the bucket's gradients, concatenated
    c10::intrusive_ptr<c10d::Work> work;
  };

  void on_gradient_ready(int64_t param);
  void start_ready_buckets();  // under mutex_
  void start(Bucket& bucket);

  std::vector<at::Tensor> parameters_;
  ProcessGroup& group_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_of_;  // parameter index -> bucket index
  std::mutex mutex_;                // hooks may run on autograd's device threads
  bool armed_ = false;
  int64_t next_bucket_ = 0;  // buckets start in order
};

}  // namespace microdit::train
