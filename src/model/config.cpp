#include "microdit/model/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "microdit/model/block_plan.h"

namespace microdit::model {
namespace {
void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("invalid model config: " + message);
}

// Fields the two zoo sizes share (official MicroDiT_Tiny_2 / MicroDiT_XL_2 bodies).
DiTConfig zoo_base(const ZooArgs& a, int64_t dim, int64_t depth, int64_t head_dim,
                   int64_t mixer_depth, int64_t mixer_dim) {
  require(a.qkv_ratio.size() == 2 && a.mlp_ratio.size() == 2,
          "zoo qkv_ratio and mlp_ratio are [first, last] pairs");
  DiTConfig c;
  c.input_size = a.input_size;
  c.patch_size = 2;
  c.in_channels = a.in_channels;
  c.dim = dim;
  c.depth = depth;
  c.head_dim = head_dim;
  c.multiple_of = 256;
  c.caption_channels = a.caption_channels;
  c.pos_interp_scale = a.pos_interp_scale;
  c.norm_eps = 1e-6;
  c.depth_init = true;
  c.qkv_multipliers = numpy_linspace(a.qkv_ratio[0], a.qkv_ratio[1], depth);
  c.ffn_multipliers = numpy_linspace(a.mlp_ratio[0], a.mlp_ratio[1], depth);
  c.use_patch_mixer = true;
  c.patch_mixer_depth = mixer_depth;
  c.patch_mixer_dim = mixer_dim;
  c.patch_mixer_qkv_ratio = 1.0;
  c.patch_mixer_mlp_ratio = 4.0;
  c.use_bias = false;
  c.num_experts = a.num_experts;
  c.expert_capacity = a.expert_capacity;
  c.experts_every_n = a.experts_every_n;
  return c;
}
}  // namespace

void DiTConfig::validate() const {
  require(patch_size > 0 && input_size % patch_size == 0,
          fmt::format("input_size {} is not a multiple of patch_size {}", input_size, patch_size));
  require(dim > 0 && head_dim > 0 && dim % head_dim == 0,
          fmt::format("dim {} is not a multiple of head_dim {}", dim, head_dim));
  require(dim % 4 == 0, fmt::format("dim {} must be a multiple of 4 (2-D sin-cos embedding)", dim));
  require(depth > 0, "depth must be positive");
  require(qkv_multipliers.size() == ffn_multipliers.size(),
          fmt::format("qkv_multipliers has {} entries, ffn_multipliers {}", qkv_multipliers.size(),
                      ffn_multipliers.size()));
  expand_ratios(qkv_multipliers, depth);  // throws when the list does not divide the depth
  require(experts_every_n > 0, "experts_every_n must be positive");
  require(num_experts > 0 && expert_capacity > 0, "num_experts and expert_capacity must be > 0");
  require(!use_patch_mixer || (patch_mixer_depth > 0 && patch_mixer_dim % head_dim == 0),
          fmt::format("patch_mixer_dim {} is not a multiple of head_dim {}", patch_mixer_dim,
                      head_dim));
  require(pos_interp_scale > 0, "pos_interp_scale must be positive");
}

DiTConfig MicroDiT_Tiny_2(const ZooArgs& args) { return zoo_base(args, 512, 16, 32, 4, 512); }
DiTConfig MicroDiT_XL_2(const ZooArgs& args) { return zoo_base(args, 1024, 28, 64, 6, 768); }

std::vector<std::string> zoo_names() { return {"MicroDiT_Tiny_2", "MicroDiT_XL_2"}; }

DiTConfig zoo_config(const std::string& name, const ZooArgs& args) {
  if (name == "MicroDiT_Tiny_2") return MicroDiT_Tiny_2(args);
  if (name == "MicroDiT_XL_2") return MicroDiT_XL_2(args);
  throw std::invalid_argument(
      fmt::format("unknown architecture '{}': known are {}", name, fmt::join(zoo_names(), ", ")));
}

DiTConfig config_from_json(const io::Json& kw) {
  DiTConfig c;
  auto ratios = [](const io::Json& list) {
    std::vector<double> out;
    for (const auto& v : io::json_to_array(list)) out.push_back(io::json_to_double(v));
    return out;
  };
  for (const auto& [key, v] : io::json_to_object(kw)) {
    if (key == "input_size")
      c.input_size = io::json_to_int64(v);
    else if (key == "patch_size")
      c.patch_size = io::json_to_int64(v);
    else if (key == "in_channels")
      c.in_channels = io::json_to_int64(v);
    else if (key == "dim")
      c.dim = io::json_to_int64(v);
    else if (key == "depth")
      c.depth = io::json_to_int64(v);
    else if (key == "head_dim")
      c.head_dim = io::json_to_int64(v);
    else if (key == "multiple_of")
      c.multiple_of = io::json_to_int64(v);
    else if (key == "caption_channels")
      c.caption_channels = io::json_to_int64(v);
    else if (key == "pos_interp_scale")
      c.pos_interp_scale = io::json_to_double(v);
    else if (key == "norm_eps")
      c.norm_eps = io::json_to_double(v);
    else if (key == "depth_init")
      c.depth_init = io::json_to_bool(v);
    else if (key == "qkv_multipliers")
      c.qkv_multipliers = ratios(v);
    else if (key == "ffn_multipliers")
      c.ffn_multipliers = ratios(v);
    else if (key == "use_patch_mixer")
      c.use_patch_mixer = io::json_to_bool(v);
    else if (key == "patch_mixer_depth")
      c.patch_mixer_depth = io::json_to_int64(v);
    else if (key == "patch_mixer_dim")
      c.patch_mixer_dim = io::json_to_int64(v);
    else if (key == "patch_mixer_qkv_ratio")
      c.patch_mixer_qkv_ratio = io::json_to_double(v);
    else if (key == "patch_mixer_mlp_ratio")
      c.patch_mixer_mlp_ratio = io::json_to_double(v);
    else if (key == "use_bias")
      c.use_bias = io::json_to_bool(v);
    else if (key == "num_experts")
      c.num_experts = io::json_to_int64(v);
    else if (key == "expert_capacity")
      c.expert_capacity = io::json_to_double(v);
    else if (key == "experts_every_n")
      c.experts_every_n = io::json_to_int64(v);
    else
      throw std::invalid_argument(fmt::format("unknown DiT argument '{}' in dit_kwargs", key));
  }
  c.validate();
  return c;
}

}  // namespace microdit::model
