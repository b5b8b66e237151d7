// Training checkpoints: one safetensors file per save holding the model, the EMA weights and the
// AdamW moments, with the step counter, run facts and a checksum of the data in its metadata.
// Written atomically (temporary file, fsync, rename); the newest N are kept. All randomness is a function of
// (seed, step, sample position), so the step and the seed are the whole RNG and data state.
#pragma once
#include <torch/optim/adamw.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "microdit/io/tensor_map.h"
#include "microdit/model/microdit.h"

namespace microdit::train {

class EMA;

struct CheckpointState {
  int64_t step = 0;          // optimizer steps completed on the global counter
  int64_t samples_seen = 0;  // global stream position of the next sample
  uint64_t seed = 0;
  std::string config_yaml;  // the resolved config of the run that wrote it
  // Training compute up to `step`, carried over by optim.continue_from (the equal-compute axes):
  // the analytic FLOPs of the steps (model/flops.h) and the time spent in them (not validation,
  // samples or checkpoints). 0 in checkpoints written before they were recorded.
  double train_flops = 0;
  double train_seconds = 0;
};

// checkpoints/step-00001234.safetensors under the run directory.
std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step);
// The checkpoints in run_dir/checkpoints as (step, path), oldest first; throws naming a file
// whose step does not fit int64.
std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& run_dir);
// The newest checkpoint in run_dir/checkpoints, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);
// Removes the temporaries (`step-N.safetensors.tmp.<pid>`) that writes killed midway left in
// run_dir/checkpoints; returns how many. Only for a run directory no other process writes to.
int64_t remove_stale_temporaries(const std::filesystem::path& run_dir);

void save_checkpoint(const std::filesystem::path& path, model::DiT& dit,
                     torch::optim::AdamW& optimizer, const EMA* ema, const CheckpointState& state);
// The same with the AdamW moments given by parameter name (a sharded optimizer gathers them).
void save_checkpoint(const std::filesystem::path& path, model::DiT& dit,
                     const io::TensorMap& optimizer_moments, int64_t optimizer_step,
                     const EMA* ema, const CheckpointState& state);
// AdamW's moments by parameter name ("<name>.exp_avg" / ".exp_avg_sq", on the CPU) and its step
// count (0 and no moments before the first step).
io::TensorMap adamw_moments(torch::optim::AdamW& optimizer, model::DiT& dit,
                            int64_t& optimizer_step);
// Removes all but the newest `keep` checkpoints.
void prune_checkpoints(const std::filesystem::path& run_dir, int64_t keep);

struct LoadedCheckpoint {
  CheckpointState state;
  io::TensorMap model;         // state-dict names
  io::TensorMap ema;           // empty when the run had no active EMA
  io::TensorMap optimizer;     // "<param name>.exp_avg" / ".exp_avg_sq"
  int64_t optimizer_step = 0;  // AdamW's per-parameter step count
};

// Throws naming the file when it is not a training checkpoint, or when its data does not match
// the checksum written with it (checkpoints written before the checksum load unchecked).
LoadedCheckpoint load_checkpoint(const std::filesystem::path& path);

// Puts the AdamW moments of `loaded` into `optimizer` for the parameters of `dit` (by name);
// throws naming a missing or mis-shaped moment. Nothing changes on error.
void restore_optimizer(torch::optim::AdamW& optimizer, model::DiT& dit,
                       const LoadedCheckpoint& loaded);

// Model weights for `init_from`: a training checkpoint's model tensors, or a plain weights file
// (.safetensors or the official .pt).
io::TensorMap load_weights_any(const std::filesystem::path& path);

// The weights microdit-sample runs: a training checkpoint's model tensors (its EMA tensors when
// `ema`; an error naming the file if it has none) with the run's resolved config YAML, or a
// plain weights file (.safetensors, the official .pt/.pth/.bin) without a config. A state dict of
// the whole official latent-diffusion model keeps only its `dit.` entries, unprefixed.
struct SamplingWeights {
  io::TensorMap tensors;
  std::optional<std::string> config_yaml;
};
SamplingWeights load_sampling_weights(const std::filesystem::path& path, bool ema);

}  // namespace microdit::train
