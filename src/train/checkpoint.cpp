#include "microdit/train/checkpoint.h"

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <stdexcept>
#include <vector>

#include "microdit/io/hashes.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/io/torch_checkpoint.h"
#include "microdit/train/ema.h"
#include "microdit/util/parse_number.h"

namespace microdit::train {
namespace {
constexpr const char* kFormat = "microdit-train-checkpoint-1";
const std::string kModel = "model.", kEma = "ema.", kOptim = "optim.";
const std::string kChecksumKey = "data_xxh64";

// xxHash64 of every tensor's name, dtype, shape and bytes in name order: a byte of the file's
// data that changed after it was written changes it (safetensors itself has no checksum).
std::string data_checksum(const io::TensorMap& tensors) {
  uint64_t hash = 0;
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor data = tensor.contiguous();
    hash = io::xxh64(fmt::format("{} {} {}", name, c10::toString(data.scalar_type()),
                                 io::shape_string(data.sizes())),
                     hash);
    hash = io::xxh64(std::string_view(static_cast<const char*>(data.const_data_ptr()),
                                      data.nbytes()),
                     hash);
  }
  return fmt::format("{:016x}", hash);
}

void add_prefixed(io::TensorMap& out, const std::string& prefix, const io::TensorMap& tensors) {
  for (const auto& [name, t] : tensors) out[prefix + name] = t.detach().to(at::kCPU);
}

io::TensorMap take_prefixed(const io::TensorMap& all, const std::string& prefix) {
  io::TensorMap out;
  for (const auto& [name, t] : all) {
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = t;
  }
  return out;
}

const std::string& meta(const std::map<std::string, std::string>& m, const std::string& key,
                        const std::filesystem::path& path) {
  auto it = m.find(key);
  if (it == m.end()) {
    throw std::runtime_error(
        fmt::format("{}: checkpoint metadata has no '{}'", path.string(), key));
  }
  return it->second;
}
}  // namespace

std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step) {
  return run_dir / "checkpoints" / fmt::format("step-{:08d}.safetensors", step);
}

std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& run_dir) {
  std::vector<std::pair<int64_t, std::filesystem::path>> found;
  const auto dir = run_dir / "checkpoints";
  if (!std::filesystem::is_directory(dir)) return found;
  static const std::regex name(R"(step-(\d+)\.safetensors)");
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::smatch m;
    const auto file = entry.path().filename().string();
    if (std::regex_match(file, m, name)) {
      found.emplace_back(
          util::parse_int(m[1].str(), entry.path().string() + ": the step in the file name"),
          entry.path());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir) {
  auto found = list_checkpoints(run_dir);
  if (found.empty()) return std::nullopt;
  return found.back().second;
}

int64_t remove_stale_temporaries(const std::filesystem::path& run_dir) {
  const auto dir = run_dir / "checkpoints";
  if (!std::filesystem::is_directory(dir)) return 0;
  static const std::regex name(R"(step-\d+\.safetensors\.tmp\.\d+)");
  int64_t removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (std::regex_match(entry.path().filename().string(), name)) {
      removed += std::filesystem::remove(entry.path()) ? 1 : 0;
    }
  }
  return removed;
}

io::TensorMap adamw_moments(torch::optim::AdamW& optimizer, model::DiT& dit,
                            int64_t& optimizer_step) {
  io::TensorMap moments;
  optimizer_step = 0;
  for (const auto& item : dit->named_parameters()) {
    auto it = optimizer.state().find(item.value().unsafeGetTensorImpl());
    if (it == optimizer.state().end()) continue;
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    moments[item.key() + ".exp_avg"] = s.exp_avg().detach().to(at::kCPU);
    moments[item.key() + ".exp_avg_sq"] = s.exp_avg_sq().detach().to(at::kCPU);
    optimizer_step = s.step();
  }
  return moments;
}

void save_checkpoint(const std::filesystem::path& path, model::DiT& dit,
                     torch::optim::AdamW& optimizer, const EMA* ema, const CheckpointState& state) {
  int64_t optimizer_step = 0;
  const auto moments = adamw_moments(optimizer, dit, optimizer_step);
  save_checkpoint(path, dit, moments, optimizer_step, ema, state);
}

void save_checkpoint(const std::filesystem::path& path, model::DiT& dit,
                     const io::TensorMap& optimizer_moments, int64_t optimizer_step,
                     const EMA* ema, const CheckpointState& state) {
  io::TensorMap tensors;
  add_prefixed(tensors, kModel, io::state_dict(*dit));
  if (ema && ema->active()) add_prefixed(tensors, kEma, ema->state());
  add_prefixed(tensors, kOptim, optimizer_moments);
  std::filesystem::create_directories(path.parent_path());
  io::save_safetensors(path, tensors,
                       {{"format", kFormat},
                        {"step", std::to_string(state.step)},
                        {"samples_seen", std::to_string(state.samples_seen)},
                        {"seed", std::to_string(state.seed)},
                        {"optimizer_step", std::to_string(optimizer_step)},
                        {"train_flops", fmt::format("{}", state.train_flops)},
                        {"train_seconds", fmt::format("{}", state.train_seconds)},
                        {"config", state.config_yaml},
                        {kChecksumKey, data_checksum(tensors)}});
}

void prune_checkpoints(const std::filesystem::path& run_dir, int64_t keep) {
  auto found = list_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < found.size(); ++i) {
    std::filesystem::remove(found[i].second);
  }
}

namespace {
LoadedCheckpoint checkpoint_from(const std::filesystem::path& path, const io::TensorMap& tensors,
                                 const std::map<std::string, std::string>& m) {
  LoadedCheckpoint c;
  const auto checksum = m.find(kChecksumKey);
  if (checksum != m.end() && checksum->second != data_checksum(tensors)) {
    throw std::runtime_error(fmt::format(
        "{}: the data does not match the checksum written with it (the file was changed or "
        "damaged after it was saved)", path.string()));
  }
  const auto count = [&](const std::string& key) {
    return util::parse_int(meta(m, key, path), path.string() + ": checkpoint metadata '" + key + "'",
                           0);
  };
  c.state.step = count("step");
  c.state.samples_seen = count("samples_seen");
  c.state.seed = util::parse_uint64(meta(m, "seed", path),
                                    path.string() + ": checkpoint metadata 'seed'");
  c.state.config_yaml = meta(m, "config", path);
  for (auto [key, value] : {std::pair{"train_flops", &c.state.train_flops},
                            std::pair{"train_seconds", &c.state.train_seconds}}) {
    if (const auto it = m.find(key); it != m.end()) {
      *value = util::parse_double(it->second,
                                  path.string() + ": checkpoint metadata '" + key + "'", 0);
    }
  }
  c.optimizer_step = count("optimizer_step");
  c.model = take_prefixed(tensors, kModel);
  c.ema = take_prefixed(tensors, kEma);
  c.optimizer = take_prefixed(tensors, kOptim);
  return c;
}

bool is_training_checkpoint(const std::map<std::string, std::string>& m) {
  return m.count("format") != 0 && m.at("format") == kFormat;
}

// The `dit.` entries of a whole latent-diffusion state dict (with VAE or text-encoder entries).
io::TensorMap dit_part(io::TensorMap tensors) {
  const bool some = std::any_of(tensors.begin(), tensors.end(),
                                [](const auto& kv) { return kv.first.starts_with("dit."); });
  return some ? take_prefixed(tensors, "dit.") : tensors;
}
}  // namespace

SamplingWeights load_sampling_weights(const std::filesystem::path& path, bool ema) {
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(fmt::format("{}: no such file", path.string()));
  }
  if (path.extension() != ".safetensors") {
    return {dit_part(io::load_torch_state_dict(path)), std::nullopt};
  }
  std::map<std::string, std::string> m;
  auto tensors = io::load_safetensors(path, &m);
  if (!is_training_checkpoint(m)) {
    if (ema) throw std::runtime_error(path.string() + ": --ema needs a microdit-train checkpoint");
    return {dit_part(std::move(tensors)), std::nullopt};
  }
  auto c = checkpoint_from(path, tensors, m);
  if (ema && c.ema.empty()) {
    throw std::runtime_error(path.string() + ": this checkpoint holds no EMA weights");
  }
  return {ema ? std::move(c.ema) : std::move(c.model), c.state.config_yaml};
}

LoadedCheckpoint load_checkpoint(const std::filesystem::path& path) {
  std::map<std::string, std::string> m;
  const auto tensors = io::load_safetensors(path, &m);
  if (!is_training_checkpoint(m)) {
    throw std::runtime_error(
        fmt::format("{}: not a microdit-train checkpoint (no format '{}' in its metadata)",
                    path.string(), kFormat));
  }
  return checkpoint_from(path, tensors, m);
}

void restore_optimizer(torch::optim::AdamW& optimizer, model::DiT& dit,
                       const LoadedCheckpoint& loaded) {
  if (loaded.optimizer.empty()) return;  // saved before the first step
  std::vector<std::pair<at::Tensor, std::unique_ptr<torch::optim::AdamWParamState>>> states;
  for (const auto& item : dit->named_parameters()) {
    const auto& p = item.value();
    auto moment = [&](const std::string& suffix) {
      auto it = loaded.optimizer.find(item.key() + suffix);
      if (it == loaded.optimizer.end() || it->second.sizes() != p.sizes()) {
        throw std::runtime_error(fmt::format(
            "checkpoint optimizer state for {} is missing or has another shape", item.key()));
      }
      return it->second.to(p.device(), p.scalar_type()).clone();
    };
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(loaded.optimizer_step);
    state->exp_avg(moment(".exp_avg"));
    state->exp_avg_sq(moment(".exp_avg_sq"));
    states.emplace_back(p, std::move(state));
  }
  for (auto& [p, state] : states) optimizer.state()[p.unsafeGetTensorImpl()] = std::move(state);
}

io::TensorMap load_weights_any(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(fmt::format("weights file {} does not exist", path.string()));
  }
  if (path.extension() == ".pt" || path.extension() == ".pth")
    return io::load_torch_state_dict(path);
  std::map<std::string, std::string> m;
  auto tensors = io::load_safetensors(path, &m);
  if (m.count("format") && m.at("format") == kFormat) return take_prefixed(tensors, kModel);
  return tensors;
}

}  // namespace microdit::train
