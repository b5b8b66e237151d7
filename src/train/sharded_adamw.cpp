#include "microdit/train/sharded_adamw.h"

#include <fmt/format.h>

#include <cmath>

namespace microdit::train {

ShardedAdamW::ShardedAdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
                           const AdamWSettings& settings, ProcessGroup& group)
    : group_(group) {
  for (const auto& [name, p] : named_params) {
    names_.push_back(name);
    params_.push_back(p);
    offsets_.push_back(total_);
    total_ += p.numel();
  }
  const int64_t world = group.size(), rank = group.rank();
  shard_ = (total_ + world - 1) / world;
  const int64_t begin = rank * shard_, end = std::min(begin + shard_, total_);
  if (begin >= end) {
    throw std::invalid_argument(fmt::format(
        "ZeRO: {} parameter elements are too few to shard across {} ranks", total_, world));
  }
  std::vector<at::Tensor> base, experts;
  at::NoGradGuard no_grad;
  for (int64_t i = 0; i < static_cast<int64_t>(params_.size()); ++i) {
    const int64_t lo = std::max(begin, offsets_[i]);
    const int64_t hi = std::min(end, offsets_[i] + params_[i].numel());
    if (lo >= hi) continue;
    Piece piece{i, lo - offsets_[i], lo - begin,
                params_[i].detach().reshape(-1).narrow(0, lo - offsets_[i], hi - lo).clone()};
    piece.master.set_requires_grad(true);
    const bool expert =
        settings.moe_lr_scale != 1.0 && is_moe_expert_weight(names_[i], params_[i]);
    (expert ? experts : base).push_back(piece.master);
    pieces_.push_back(std::move(piece));
  }
  optimizer_ = make_adamw(std::move(base), std::move(experts), settings);
}

at::Tensor ShardedAdamW::flat_gradients() const {
  std::vector<at::Tensor> parts;
  for (const auto& p : params_) {
    parts.push_back(p.grad().defined() ? p.grad().reshape(-1) : at::zeros({p.numel()}, p.options()));
  }
  const int64_t padding = shard_ * group_.size() - total_;
  if (padding > 0) parts.push_back(at::zeros({padding}, params_.front().options()));
  return at::cat(parts);
}

at::Tensor ShardedAdamW::shard_of(const std::function<at::Tensor(const Piece&)>& get) const {
  auto shard = at::zeros({shard_}, pieces_.front().master.options());
  for (const auto& piece : pieces_) {
    shard.narrow(0, piece.shard_offset, piece.master.numel()).copy_(get(piece));
  }
  return shard;
}

double ShardedAdamW::step(double max_norm) {
  at::NoGradGuard no_grad;
  auto flat = flat_gradients();
  auto grad = at::empty({shard_}, flat.options());
  group_.reduce_scatter(grad, flat, "ZeRO reduce-scatter of the gradients");
  // The full gradients are not needed any more: their memory is what stage 2 saves.
  flat = at::Tensor();
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
  auto squares = grad.to(at::kDouble).square().sum().reshape({1});
  group_.all_reduce(squares, "all-reduce of the gradient norm");
  const double norm = std::sqrt(squares.item<double>());
  if (max_norm > 0) grad.mul_(std::min(1.0, max_norm / (norm + 1e-6)));  // as clip_grad_norm
  for (auto& piece : pieces_) {
    piece.master.mutable_grad() = grad.narrow(0, piece.shard_offset, piece.master.numel());
  }
  optimizer_->step();
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
  auto shard = shard_of([](const Piece& piece) { return piece.master.detach(); });
  auto full = at::empty({shard_ * group_.size()}, shard.options());
  group_.all_gather(full, shard, "ZeRO all-gather of the parameters");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    params_[i].detach().copy_(full.narrow(0, offsets_[i], params_[i].numel()).view_as(params_[i]));
  }
}

io::TensorMap ShardedAdamW::gather_moments(int64_t& optimizer_step) {
  io::TensorMap out;
  auto& state = optimizer_->state();
  const auto* first = state.find(pieces_.front().master.unsafeGetTensorImpl()) != state.end()
                          ? state.at(pieces_.front().master.unsafeGetTensorImpl()).get()
                          : nullptr;
  // Every rank steps together, so either all pieces have moments or none do.
  int64_t local_step = first ? static_cast<const torch::optim::AdamWParamState&>(*first).step() : 0;
  auto steps = at::tensor({local_step}, at::kLong).to(pieces_.front().master.device());
  group_.all_reduce(steps, "all-reduce of the AdamW step");
  optimizer_step = steps.item<int64_t>() / group_.size();
  if (optimizer_step == 0) return out;
  for (const char* which : {"exp_avg", "exp_avg_sq"}) {
    const std::string key = which;
    auto shard = shard_of([&](const Piece& piece) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(
          *state.at(piece.master.unsafeGetTensorImpl()));
      return key == "exp_avg" ? s.exp_avg() : s.exp_avg_sq();
    });
    auto full = at::empty({shard_ * group_.size()}, shard.options());
    group_.all_gather(full, shard, "ZeRO all-gather of the AdamW moments");
    full = full.cpu();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      out[names_[i] + "." + key] =
          full.narrow(0, offsets_[i], params_[i].numel()).view(params_[i].sizes()).clone();
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
          .to(p.device(), at::kFloat)
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
