#include "microdit/train/gradient_buckets.h"

#include <fmt/format.h>

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

namespace microdit::train {
namespace {

// Runs after AccumulateGrad has written a parameter's .grad (DDP's hook point).
class ReadyHook : public torch::autograd::PostAccumulateGradHook {
 public:
  ReadyHook(std::function<void()> ready) : ready_(std::move(ready)) {}
  void operator()(const torch::autograd::Variable&) override { ready_(); }

 private:
  std::function<void()> ready_;
};

}  // namespace

GradientBuckets::GradientBuckets(std::vector<at::Tensor> parameters, ProcessGroup& group,
                                 double bucket_mb, BucketReduction reduction)
    : parameters_(std::move(parameters)),
      group_(group),
      reduction_(reduction),
      bucket_of_(parameters_.size()) {
  const auto cap = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  int64_t bytes = cap;  // forces a new bucket for the first parameter
  for (int64_t i = static_cast<int64_t>(parameters_.size()) - 1; i >= 0; --i) {
    const auto& p = parameters_[i];
    // finish() hands each parameter a contiguous view of its bucket as the gradient.
    TORCH_CHECK(p.is_contiguous(), "GradientBuckets: parameter ", i, " ", p.sizes(),
                " is not contiguous");
    const bool same_kind = !buckets_.empty() &&
                           parameters_[buckets_.back().params.front()].dtype() == p.dtype() &&
                           parameters_[buckets_.back().params.front()].device() == p.device();
    if (bytes >= cap || !same_kind) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().params.push_back(i);
    buckets_.back().elements += p.numel();
    bucket_of_[i] = static_cast<int64_t>(buckets_.size()) - 1;
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  reset_round();
  for (int64_t i = 0; i < static_cast<int64_t>(parameters_.size()); ++i) {
    torch::autograd::impl::set_post_acc_grad_hooks(
        parameters_[i], std::make_unique<ReadyHook>([this, i] { on_gradient_ready(i); }));
  }
}

GradientBuckets::~GradientBuckets() {
  for (const auto& p : parameters_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

int64_t GradientBuckets::shard_elements(int64_t b) const {
  return (buckets_[b].elements + group_.size() - 1) / group_.size();
}

void GradientBuckets::reset_round() {
  next_bucket_ = 0;
  for (auto& b : buckets_) {
    b.pending = static_cast<int64_t>(b.params.size());
    b.work.reset();
  }
}

void GradientBuckets::arm() {
  std::lock_guard lock(mutex_);
  armed_ = true;
  reset_round();
}

void GradientBuckets::on_gradient_ready(int64_t param) {
  std::lock_guard lock(mutex_);
  if (!armed_) return;
  --buckets_[bucket_of_[param]].pending;
  start_ready_buckets();
}

void GradientBuckets::start_ready_buckets() {
  while (next_bucket_ < num_buckets() && buckets_[next_bucket_].pending == 0) {
    start(next_bucket_++);
  }
}

void GradientBuckets::start(int64_t b) {
  Bucket& bucket = buckets_[b];
  std::vector<at::Tensor> grads;
  for (const int64_t i : bucket.params) {
    const auto& p = parameters_[i];
    grads.push_back(p.grad().defined() ? p.grad().reshape(-1) : at::zeros({p.numel()}, p.options()));
  }
  if (reduction_ == BucketReduction::all_reduce) {
    bucket.flat = at::cat(grads);
    bucket.work = group_.start_all_reduce(bucket.flat);
    return;
  }
  const int64_t padding = shard_elements(b) * group_.size() - bucket.elements;
  if (padding > 0) grads.push_back(at::zeros({padding}, grads.front().options()));
  bucket.flat = at::cat(grads);
  // The bucket holds the only copy now: the full gradients' memory is what stage 2 saves.
  for (const int64_t i : bucket.params) parameters_[i].mutable_grad() = at::Tensor();
  bucket.shard = at::empty({shard_elements(b)}, bucket.flat.options());
  bucket.work = group_.start_reduce_scatter(bucket.shard, bucket.flat);
}

void GradientBuckets::finish() {
  {
    std::lock_guard lock(mutex_);
    for (auto& b : buckets_) b.pending = 0;  // a gradient that never came counts as zero
    start_ready_buckets();
    armed_ = false;
  }
  for (int64_t b = 0; b < num_buckets(); ++b) {
    auto& bucket = buckets_[b];
    const char* op = reduction_ == BucketReduction::all_reduce ? "all-reduce" : "reduce-scatter";
    group_.wait(bucket.work, fmt::format("{} of gradient bucket {}", op, b));
    if (reduction_ == BucketReduction::all_reduce) {
      // Each gradient becomes its view of the summed bucket (DDP's gradient_as_bucket_view, as
      // far as finish() goes): no copy back. The step's zero_grad(set_to_none) releases them.
      int64_t offset = 0;
      for (const int64_t i : bucket.params) {
        auto& p = parameters_[i];
        p.mutable_grad() = bucket.flat.narrow(0, offset, p.numel()).view_as(p);
        offset += p.numel();
      }
    }
    bucket.flat = at::Tensor();
  }
  std::lock_guard lock(mutex_);
  reset_round();
}

}  // namespace microdit::train
