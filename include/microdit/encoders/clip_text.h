// The CLIP text transformer (Radford et al. 2021): MicroDiT's caption encoder. The official
// pipeline stores, per caption, the 77 token states of DFN5B-CLIP-ViT-H-14-378's text tower after
// its final LayerNorm (no pooling, no projection); forward() computes exactly those.
//
// One module, two parameter layouts, so that released files load unchanged:
//   open_clip  token_embedding, positional_embedding, transformer.resblocks.{i}.{ln_1, attn, ln_2,
//              mlp.c_fc, mlp.c_proj}, ln_final (attn keeps nn.MultiheadAttention's fused
//              in_proj_weight with q, k, v stacked in that order, and out_proj)
//   hf         text_model.{embeddings.{token,position}_embedding, encoder.layers.{i}.{layer_norm1,
//              self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}, final_layer_norm}
// Both compute the same function: x = tok(ids) + pos; per block x += attn(ln1(x)) with a causal
// mask, x += fc2(act(fc1(ln2(x)))); then the final LayerNorm over every token.
// With projection_dim > 0 the tower also holds CLIP's text projection (open_clip text_projection
// (D,P) used as x @ proj; HF text_projection.weight (P,D), a Linear without bias), for
// projected(): the text embedding that CLIP scores compare with image embeddings.
// The attention, MLP and layer modules serve the image tower too (clip_vision.h), there without
// the causal mask.
//
// Legend: B batch, T tokens (<= context_length, 77), D width, F MLP width, H heads, V vocab,
// P projection dim.
#pragma once
#include <c10/util/StringUtil.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "microdit/io/json.h"
#include "microdit/io/tensor_map.h"

namespace microdit::encoders {

enum class CLIPTextLayout { open_clip, hf };

// quick_gelu: x * sigmoid(1.702 x) (OpenAI CLIP, DFN5B); gelu: the exact erf GELU.
enum class CLIPTextActivation { quick_gelu, gelu };

std::string_view to_string(CLIPTextLayout layout);
std::string_view to_string(CLIPTextActivation activation);
// HF `hidden_act` names: "quick_gelu" or "gelu"; anything else throws naming the value.
CLIPTextActivation parse_clip_text_activation(std::string_view name);
// An open_clip model config's activation for both towers: QuickGELU when "quick_gelu" is true,
// else the exact GELU.
CLIPTextActivation open_clip_activation(const io::Json& model_config);

struct CLIPTextConfig {
  int64_t vocab_size = 49408;   // V
  int64_t context_length = 77;  // rows of the positional embedding
  int64_t width = 1024;         // D
  int64_t heads = 16;           // H; head width D / H
  int64_t layers = 24;
  double mlp_ratio = 4.0;  // F = int(D * mlp_ratio), as open_clip computes it
  CLIPTextActivation activation = CLIPTextActivation::quick_gelu;
  double layer_norm_eps = 1e-5;
  CLIPTextLayout layout = CLIPTextLayout::open_clip;
  // false: every token sees every token (the image tower's layers, built from this config).
  bool causal = true;
  // P; 0: no text projection (the caption encoder). from_*_json leave it 0, so configs of
  // full CLIP models still load text towers without their projection; set it to load one.
  int64_t projection_dim = 0;

  int64_t mlp_width() const;
  // Throws std::invalid_argument "<what>: <field> = <value>, expected ..." for the first field
  // out of range.
  void validate(std::string_view what = "CLIP text config") const;

  // The text tower of apple/DFN5B-CLIP-ViT-H-14-378 (open_clip ViT-H-14-378-quickgelu).
  static CLIPTextConfig dfn5b_vit_h_14_378();
  // An HF CLIPTextConfig (config.json of a CLIPTextModel) or a CLIPConfig, whose "text_config"
  // is used; keys left out take HF's CLIPTextConfig defaults. The layout is hf.
  static CLIPTextConfig from_hf_json(const io::Json& json);
  // An open_clip model config (e.g. ViT-H-14-378-quickgelu.json): its "text_cfg" (keys left out
  // take open_clip's CLIPTextCfg defaults) and "quick_gelu" (absent: the exact GELU). The layout
  // is open_clip.
  static CLIPTextConfig from_open_clip_json(const io::Json& json);
};

// A value of an HF or open_clip config JSON object: `fallback` when absent or null; a value of
// another type throws std::invalid_argument starting with `what` and naming the key. Shared by
// the text and image towers' configs.
int64_t clip_config_int(const io::Json& json, std::string_view key, int64_t fallback,
                        std::string_view what);
double clip_config_double(const io::Json& json, std::string_view key, double fallback,
                          std::string_view what);

// Throws std::invalid_argument "<what>: <field> = <value>, expected <expected>" unless ok.
template <class T>
void require_clip_config(bool ok, std::string_view what, std::string_view field, const T& value,
                         std::string_view expected) {
  if (!ok) {
    throw std::invalid_argument(c10::str(what, ": ", field, " = ", value, ", expected ", expected));
  }
}

// HF's defaults for the transformer fields of a CLIPTextConfig or CLIPVisionConfig.
struct HfTransformerDefaults {
  int64_t hidden_size;
  int64_t num_attention_heads;
  int64_t num_hidden_layers;
  int64_t intermediate_size;
};
// The transformer fields of an HF text or vision config object (hidden_size,
// num_attention_heads, num_hidden_layers, intermediate_size as mlp_ratio, hidden_act,
// layer_norm_eps), in the hf layout; the rest keep CLIPTextConfig's defaults. Not validated
// beyond what reading needs; errors start with `what`.
CLIPTextConfig read_hf_transformer_fields(const io::Json& cfg, const HfTransformerDefaults& defaults,
                                          std::string_view what);

// Multi-head self-attention, under the causal mask (a token sees itself and earlier tokens)
// unless config.causal is false.
class CLIPTextAttentionImpl : public torch::nn::Module {
 public:
  explicit CLIPTextAttentionImpl(const CLIPTextConfig& config);
  at::Tensor forward(const at::Tensor& x);  // (B,T,D) -> (B,T,D)

  int64_t heads;
  bool causal;
  at::Tensor in_proj_weight;            // open_clip: (3D, D), rows q | k | v
  at::Tensor in_proj_bias;              // open_clip: (3D)
  torch::nn::Linear q_proj{nullptr};    // hf: (D, D)
  torch::nn::Linear k_proj{nullptr};    // hf: (D, D)
  torch::nn::Linear v_proj{nullptr};    // hf: (D, D)
  torch::nn::Linear out_proj{nullptr};  // (D, D)
};
TORCH_MODULE(CLIPTextAttention);

// fc1 -> activation -> fc2; registered as c_fc/c_proj (open_clip) or fc1/fc2 (hf).
class CLIPTextMlpImpl : public torch::nn::Module {
 public:
  explicit CLIPTextMlpImpl(const CLIPTextConfig& config);
  at::Tensor forward(const at::Tensor& x);  // (B,T,D) -> (B,T,D)

  CLIPTextActivation activation;
  torch::nn::Linear fc1{nullptr};  // (F, D)
  torch::nn::Linear fc2{nullptr};  // (D, F)
};
TORCH_MODULE(CLIPTextMlp);

// Pre-norm residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class CLIPTextLayerImpl : public torch::nn::Module {
 public:
  explicit CLIPTextLayerImpl(const CLIPTextConfig& config);
  at::Tensor forward(const at::Tensor& x);  // (B,T,D) -> (B,T,D)

  torch::nn::LayerNorm ln_1{nullptr};  // hf: layer_norm1
  CLIPTextAttention attn{nullptr};     // hf: self_attn
  torch::nn::LayerNorm ln_2{nullptr};  // hf: layer_norm2
  CLIPTextMlp mlp{nullptr};
};
TORCH_MODULE(CLIPTextLayer);

class CLIPTextEncoderImpl : public torch::nn::Module {
 public:
  explicit CLIPTextEncoderImpl(const CLIPTextConfig& config);

  // ids (B,T) integer token ids, T <= context_length, each in [0, V) -> (B,T,D): every token's
  // state after the final LayerNorm (the caption embeddings MicroDiT trains on). Runs in the
  // module's dtype and device; the id range check reads two scalars back from the device.
  at::Tensor forward(const at::Tensor& ids);
  // (B,T) -> (B,D): forward()'s state at argmax(ids) per row, the EOT token (49407, the largest
  // id) as open_clip's text_global_pool and HF's pooler_output (legacy eos_token_id == 2 branch)
  // pick it for tokenizer output. No projection.
  at::Tensor pooled(const at::Tensor& ids);
  // (B,T) -> (B,P): pooled() through the text projection (open_clip encode_text, HF
  // get_text_features), not normalized. Throws std::logic_error when projection_dim is 0.
  at::Tensor projected(const at::Tensor& ids);

  const CLIPTextConfig& config() const { return config_; }

  torch::nn::Embedding token_embedding{nullptr};  // (V, D)
  // (context_length, D): open_clip's positional_embedding parameter, or the weight of HF's
  // position_embedding (same tensor).
  at::Tensor positional_embedding;
  torch::nn::Embedding position_embedding{nullptr};  // hf only
  std::vector<CLIPTextLayer> layers;
  torch::nn::LayerNorm ln_final{nullptr};  // hf: final_layer_norm
  at::Tensor text_projection;              // open_clip, projection_dim > 0: (D,P)
  torch::nn::Linear text_projection_linear{nullptr};  // hf, projection_dim > 0: weight (P,D)

 private:
  void register_projection();

  CLIPTextConfig config_;
};
TORCH_MODULE(CLIPTextEncoder);

// Keys of a full CLIP checkpoint outside the text tower (image tower, projections, logit scale,
// HF's position_ids buffer): load_clip_text_* skip them without a word, all but the text
// projection when the encoder has one.
bool is_ignored_clip_key(std::string_view key);

// The layout whose token-embedding key `tensors` holds, if either.
std::optional<CLIPTextLayout> detect_clip_text_layout(const io::TensorMap& tensors);

// Strict: after dropping ignored keys, every text-tower tensor must be present with the model's
// shape and nothing else may remain; throws std::runtime_error listing each problem by key, and
// one naming both layouts when the tensors are in the other layout. HF keys without the
// text_model. prefix (a bare CLIPTextModel as transformers 5 names it) are accepted too.
// Tensors are converted to the module's dtype and device.
void load_clip_text_state_dict(CLIPTextEncoder& encoder, const io::TensorMap& tensors);

// `.safetensors`, or a torch.save archive (HF pytorch_model.bin, open_clip .pt, including
// `state_dict` wrappers and `module.` prefixes). Errors start with the file path.
void load_clip_text_weights(CLIPTextEncoder& encoder, const std::filesystem::path& path);
io::TensorMap read_clip_text_weights(const std::filesystem::path& path);
void load_clip_text_weights(CLIPTextEncoder& encoder, const io::TensorMap& tensors,
                            const std::filesystem::path& path);

// Compares the config's layer count, width, vocabulary and context length with the weights'
// tensor names and shapes (either layout); throws one line naming `config_source` and the first
// difference. Run before the encoder is built: a config of another size would build it first.
void check_clip_text_config(const CLIPTextConfig& config, const io::TensorMap& tensors,
                            const std::string& config_source);

}  // namespace microdit::encoders
