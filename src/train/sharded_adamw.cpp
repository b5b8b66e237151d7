#include "microdit/train/sharded_adamw.h"

#include <fmt/format.h>

#include "microdit/train/train_step.h"

namespace microdit::train {

ShardedAdamW::ShardedAdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
                           const AdamWSettings& settings, ProcessGroup& group, double bucket_mb)
    : offset_in_bucket_(named_params.size()), group_(group) {
  for (const auto& [name, p] : named_params) {
    names_.push_back(name);
    params_.push_back(p);
  }
  buckets_ = std::make_unique<GradientBuckets>(params_, group, bucket_mb,
                                               BucketReduction::reduce_scatter);
  const int64_t rank = group.rank();
  std::vector<at::Tensor> base, experts;
  at::NoGradGuard no_grad;
  for (int64_t b = 0; b < buckets_->num_buckets(); ++b) {
    const int64_t size = buckets_->shard_elements(b), begin = rank * size, end = begin + size;
    int64_t offset = 0;
    for (const int64_t i : buckets_->bucket_params(b)) {
      offset_in_bucket_[i] = offset;
      const int64_t lo = std::max(begin, offset), hi = std::min(end, offset + params_[i].numel());
      offset += params_[i].numel();
      if (lo >= hi) continue;
      const int64_t in_param = lo - offset_in_bucket_[i];
      Piece piece{i, in_param, b, lo - begin,
                  params_[i].detach().reshape(-1).narrow(0, in_param, hi - lo).clone()};
      piece.master.set_requires_grad(true);
      const bool expert =
          settings.moe_lr_scale != 1.0 && is_moe_expert_weight(names_[i], params_[i]);
      (expert ? experts : base).push_back(piece.master);
      pieces_.push_back(std::move(piece));
    }
  }
  if (pieces_.empty()) {
    throw std::invalid_argument(fmt::format(
        "ZeRO: rank {} of {} would own no parameter element (too few to shard)", rank,
        group.size()));
  }
  optimizer_ = make_adamw(std::move(base), std::move(experts), settings);
}

at::Tensor ShardedAdamW::bucket_shard(int64_t b,
                                      const std::function<at::Tensor(const Piece&)>& get) const {
  auto shard = at::zeros({buckets_->shard_elements(b)}, pieces_.front().master.options());
  for (const auto& piece : pieces_) {
    if (piece.bucket == b) {
      shard.narrow(0, piece.shard_offset, piece.master.numel()).copy_(get(piece));
    }
  }
  return shard;
}

at::Tensor ShardedAdamW::gather_bucket(int64_t b,
                                       const std::function<at::Tensor(const Piece&)>& get,
                                       const std::string& what) {
  auto shard = bucket_shard(b, get);
  auto full = at::empty({shard.numel() * group_.size()}, shard.options());
  group_.all_gather(full, shard, what);
  return full;
}

at::Tensor ShardedAdamW::step(double max_norm) {
  at::NoGradGuard no_grad;
  buckets_->finish();
  auto squares = at::zeros({1}, at::TensorOptions(pieces_.front().master.device()).dtype(at::kDouble));
  for (int64_t b = 0; b < buckets_->num_buckets(); ++b) {
    squares += buckets_->shard(b).to(at::kDouble).square().sum();
  }
  group_.all_reduce(squares, "all-reduce of the gradient norm");
  // On the device, as clip_and_step: the host does not wait for the gradients here.
  const auto norm = squares.sqrt().squeeze();
  std::vector<at::Tensor> grads;
  for (auto& piece : pieces_) {
    // The shards are fresh each step, so clipping may scale them in place.
    piece.master.mutable_grad() =
        buckets_->shard(piece.bucket).narrow(0, piece.shard_offset, piece.master.numel());
    grads.push_back(piece.master.grad());
  }
  clip_to_norm_and_step(grads, norm, *optimizer_, max_norm);
  gather_into_parameters();
  return norm;
}

void ShardedAdamW::refresh_from_parameters() {
  at::NoGradGuard no_grad;
  for (auto& piece : pieces_) {
    piece.master.copy_(params_[piece.param].detach().reshape(-1).narrow(
        0, piece.param_offset, piece.master.numel()));
  }
}

void ShardedAdamW::gather_into_parameters() {
  for (int64_t b = 0; b < buckets_->num_buckets(); ++b) {
    const auto full = gather_bucket(
        b, [](const Piece& piece) { return piece.master.detach(); },
        "ZeRO all-gather of the parameters");
    for (const int64_t i : buckets_->bucket_params(b)) {
      params_[i].detach().copy_(
          full.narrow(0, offset_in_bucket_[i], params_[i].numel()).view_as(params_[i]));
    }
  }
}

io::TensorMap ShardedAdamW::gather_moments(int64_t& optimizer_step) {
  io::TensorMap out;
  auto& state = optimizer_->state();
  const auto first = state.find(pieces_.front().master.unsafeGetTensorImpl());
  // Every rank steps together, so either all pieces have moments or none do.
  const int64_t local_step =
      first == state.end()
          ? 0
          : static_cast<const torch::optim::AdamWParamState&>(*first->second).step();
  auto steps = at::tensor({local_step}, at::kLong).to(pieces_.front().master.device());
  group_.all_reduce(steps, "all-reduce of the AdamW step");
  optimizer_step = steps.item<int64_t>() / group_.size();
  if (optimizer_step == 0) return out;
  for (const std::string key : {"exp_avg", "exp_avg_sq"}) {
    auto moment = [&](const Piece& piece) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(
          *state.at(piece.master.unsafeGetTensorImpl()));
      return key == "exp_avg" ? s.exp_avg() : s.exp_avg_sq();
    };
    for (int64_t b = 0; b < buckets_->num_buckets(); ++b) {
      const auto full = gather_bucket(b, moment, "ZeRO all-gather of the AdamW moments").cpu();
      for (const int64_t i : buckets_->bucket_params(b)) {
        out[names_[i] + "." + key] =
            full.narrow(0, offset_in_bucket_[i], params_[i].numel()).view(params_[i].sizes()).clone();
      }
    }
  }
  return out;
}

void ShardedAdamW::load_moments(const io::TensorMap& moments, int64_t optimizer_step) {
  if (moments.empty()) return;  // saved before the first step
  std::vector<std::unique_ptr<torch::optim::AdamWParamState>> states;
  for (const auto& piece : pieces_) {
    const auto& p = params_[piece.param];
    auto slice = [&](const std::string& suffix) {
      const auto it = moments.find(names_[piece.param] + suffix);
      if (it == moments.end() || it->second.sizes() != p.sizes()) {
        throw std::runtime_error(fmt::format(
            "checkpoint optimizer state for {} is missing or has another shape",
            names_[piece.param]));
      }
      return it->second.reshape(-1)
          .narrow(0, piece.param_offset, piece.master.numel())
          .to(p.device(), piece.master.scalar_type())
          .clone();
    };
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(optimizer_step);
    state->exp_avg(slice(".exp_avg"));
    state->exp_avg_sq(slice(".exp_avg_sq"));
    states.push_back(std::move(state));
  }
  for (std::size_t k = 0; k < pieces_.size(); ++k) {
    optimizer_->state()[pieces_[k].master.unsafeGetTensorImpl()] = std::move(states[k]);
  }
}

}  // namespace microdit::train
