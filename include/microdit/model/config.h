// DiTConfig: the official `DiT(...)` constructor arguments, the model zoo, and YAML/JSON loading.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "microdit/io/json.h"

namespace microdit::model {

struct DiTConfig {
  int64_t input_size = 32;  // latent H = W
  int64_t patch_size = 2;
  int64_t in_channels = 4;
  int64_t dim = 1152;
  int64_t depth = 28;
  int64_t head_dim = 64;
  int64_t multiple_of = 256;
  int64_t caption_channels = 1024;
  double pos_interp_scale = 1.0;
  double norm_eps = 1e-6;
  bool depth_init = true;
  // Layer-wise scaling: one ratio per block, or a shorter list repeated (see block_plan.h).
  std::vector<double> qkv_multipliers{1.0};
  std::vector<double> ffn_multipliers{4.0};
  bool use_patch_mixer = true;  // false: masking right after the embedding (naive masking)
  int64_t patch_mixer_depth = 4;
  int64_t patch_mixer_dim = 512;
  double patch_mixer_qkv_ratio = 1.0;
  double patch_mixer_mlp_ratio = 1.0;
  bool use_bias = true;
  int64_t num_experts = 8;
  double expert_capacity = 1.0;
  int64_t experts_every_n = 2;

  int64_t grid_size() const { return input_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  // Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
};

// Zoo arguments shared by MicroDiT_Tiny_2 / MicroDiT_XL_2 (official defaults).
struct ZooArgs {
  int64_t caption_channels = 1024;
  std::vector<double> qkv_ratio{0.5, 1.0};  // first and last block, linspace between
  std::vector<double> mlp_ratio{0.5, 4.0};
  double pos_interp_scale = 1.0;
  int64_t input_size = 32;
  int64_t num_experts = 8;
  double expert_capacity = 2.0;
  int64_t experts_every_n = 2;
  int64_t in_channels = 4;
};

DiTConfig MicroDiT_Tiny_2(const ZooArgs& args = {});
DiTConfig MicroDiT_XL_2(const ZooArgs& args = {});
// "MicroDiT_Tiny_2" or "MicroDiT_XL_2"; throws naming the known architectures otherwise.
DiTConfig zoo_config(const std::string& name, const ZooArgs& args = {});
std::vector<std::string> zoo_names();

// The `dit_kwargs` object of a reference set's config.json (official argument names).
DiTConfig config_from_json(const io::Json& dit_kwargs);

}  // namespace microdit::model
