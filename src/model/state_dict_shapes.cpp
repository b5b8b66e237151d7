#include "microdit/model/state_dict_shapes.h"

#include <fmt/format.h>

#include <map>
#include <stdexcept>

#include "microdit/model/block_plan.h"
#include "microdit/nn/hidden_dims.h"

namespace microdit::model {
namespace {
using Shape = std::vector<int64_t>;

// Appends under a dotted prefix, as register_module nests names.
class Shapes {
 public:
  explicit Shapes(std::vector<TensorShape>& out, std::string prefix = "")
      : out_(out), prefix_(std::move(prefix)) {}
  Shapes operator/(const std::string& child) const { return Shapes(out_, prefix_ + child + "."); }
  void parameter(const std::string& name, Shape shape) const {
    out_.push_back({prefix_ + name, std::move(shape), true});
  }
  void buffer(const std::string& name, Shape shape) const {
    out_.push_back({prefix_ + name, std::move(shape), false});
  }
  void linear(int64_t in, int64_t out, bool bias) const {
    parameter("weight", {out, in});
    if (bias) parameter("bias", {out});
  }
  void norm(int64_t dim) const { parameter("weight", {dim}); }  // LayerNorm without bias

 private:
  std::vector<TensorShape>& out_;
  std::string prefix_;
};

void self_attention(const Shapes& s, int64_t d, int64_t hidden, bool bias) {
  (s / "qkv").linear(d, 3 * hidden, bias);
  (s / "proj").linear(hidden, d, bias);
}

void swiglu(const Shapes& s, int64_t d, int64_t hidden, int64_t multiple_of, bool bias) {
  const int64_t f = nn::swiglu_hidden_dim(hidden, multiple_of);
  (s / "w1").linear(d, f, bias);
  (s / "w2").linear(d, f, bias);
  (s / "w3").linear(f, d, bias);
}

// fc1 -> [norm] -> fc2 (nn::Mlp).
void mlp(const Shapes& s, int64_t in, int64_t hidden, int64_t out, bool norm) {
  (s / "fc1").linear(in, hidden, true);
  if (norm) (s / "norm").norm(hidden);
  (s / "fc2").linear(hidden, out, true);
}

void dit_block(const Shapes& s, const nn::DiTBlockOptions& o) {
  const int64_t d = o.dim;
  const int64_t hidden = nn::qkv_hidden_dim(d, o.qkv_ratio, o.head_dim);
  const auto mlp_hidden = static_cast<int64_t>(static_cast<double>(d) * o.mlp_ratio);
  (s / "norm1").norm(d);
  self_attention(s / "attn", d, hidden, o.use_bias);
  const Shapes cross = s / "cross_attn";
  (cross / "q_linear").linear(d, d, o.use_bias);
  (cross / "kv_linear").linear(d, 2 * d, o.use_bias);
  (cross / "proj").linear(d, d, o.use_bias);
  (s / "norm2").norm(d);
  (s / "norm3").norm(d);
  if (o.moe) {
    const int64_t f = nn::round_up(mlp_hidden, o.multiple_of);
    (s / "mlp" / "gate").linear(d, o.num_experts, false);
    (s / "mlp").parameter("w1", {o.num_experts, d, f});
    (s / "mlp").parameter("w2", {o.num_experts, f, d});
  } else {
    swiglu(s / "mlp", d, mlp_hidden, o.multiple_of, o.use_bias);
  }
  (s / "adaLN_modulation" / "1").linear(o.pooled_emb_dim, 6 * d, true);
}

void width_map(const Shapes& s, int64_t in, int64_t out, bool bias) {
  (s / "0").norm(in);
  (s / "1").linear(in, out, bias);
}

std::string shape_text(const Shape& shape) { return io::shape_string(shape); }
}  // namespace

std::vector<TensorShape> state_dict_shapes(const DiTConfig& c) {
  std::vector<TensorShape> out;
  const Shapes s(out);
  const int64_t D = c.dim, p = c.patch_size;
  (s / "x_embedder" / "proj").parameter("weight", {D, c.in_channels, p, p});
  (s / "x_embedder" / "proj").parameter("bias", {D});
  (s / "t_embedder" / "mlp" / "0").linear(512, D, true);
  (s / "t_embedder" / "mlp" / "2").linear(D, D, true);
  s.buffer("pos_embed", {1, c.num_patches(), D});
  mlp(s / "y_embedder" / "y_proj", c.caption_channels, D, D, /*norm=*/true);
  const Shapes caption = s / "y_emb_preprocess";
  (caption / "norm1").norm(D);
  self_attention(caption / "attn", D, D, c.use_bias);
  (caption / "norm2").norm(D);
  swiglu(caption / "mlp", D, 4 * D, c.multiple_of, c.use_bias);
  mlp(s / "pooled_y_emb_process", D, D, D, /*norm=*/true);
  if (c.use_patch_mixer) {
    const auto mixer = mixer_blocks(c);
    for (size_t i = 0; i < mixer.size(); ++i) {
      dit_block(s / "patch_mixer" / std::to_string(i), mixer[i]);
    }
    if (c.patch_mixer_dim != D) {
      const int64_t Dm = c.patch_mixer_dim;
      width_map(s / "patch_mixer_map_xin", D, Dm, c.use_bias);
      width_map(s / "patch_mixer_map_xout", Dm, D, c.use_bias);
      width_map(s / "patch_mixer_map_y", D, Dm, c.use_bias);
    }
  }
  const auto backbone = backbone_blocks(c);
  for (size_t i = 0; i < backbone.size(); ++i) {
    dit_block(s / "blocks" / std::to_string(i), backbone[i]);
  }
  s.buffer("mask_token", {1, 1, p * p * c.in_channels});
  (s / "final_layer" / "norm_final").norm(D);
  (s / "final_layer" / "linear").linear(D, p * p * c.in_channels, true);
  (s / "final_layer" / "adaLN_modulation" / "1").linear(D, 2 * D, true);
  return out;
}

int64_t count_parameters(const DiTConfig& config) {
  int64_t n = 0;
  for (const auto& tensor : state_dict_shapes(config)) {
    if (!tensor.parameter) continue;
    int64_t numel = 1;
    for (int64_t size : tensor.shape) numel *= size;
    n += numel;
  }
  return n;
}

void check_state_dict_shapes(const DiTConfig& config, const io::TensorMap& tensors,
                             const std::string& source) {
  std::map<std::string, Shape> expected;
  for (auto& tensor : state_dict_shapes(config)) expected.emplace(tensor.name, tensor.shape);
  std::string first;
  int64_t differences = 0;
  const auto note = [&](std::string problem) {
    if (differences++ == 0) first = std::move(problem);
  };
  for (const auto& [name, shape] : expected) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      note(fmt::format("missing {} {}", name, shape_text(shape)));
    } else if (!it->second.defined() || it->second.sizes() != at::IntArrayRef(shape)) {
      note(fmt::format("{} is {}, the model's is {}", name,
                       it->second.defined() ? io::shape_string(it->second.sizes()) : "undefined",
                       shape_text(shape)));
    }
  }
  for (const auto& [name, tensor] : tensors) {
    if (!expected.contains(name)) note(fmt::format("unexpected tensor {}", name));
  }
  if (differences == 0) return;
  throw std::invalid_argument(fmt::format(
      "{}: the weights are not of this model ({} parameters): {} difference{} from its state dict, "
      "the first: {}",
      source, count_parameters(config), differences, differences == 1 ? "" : "s", first));
}

}  // namespace microdit::model
