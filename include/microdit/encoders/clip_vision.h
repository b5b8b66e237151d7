// The CLIP image tower (Radford et al. 2021): a ViT whose projected class token is the image
// embedding that CLIP scores compare with text embeddings (clip_score.h).
//
// One module, two parameter layouts, so that released files load unchanged:
//   open_clip  visual.{conv1, class_embedding, positional_embedding, ln_pre,
//              transformer.resblocks.{i}.*, ln_post, proj}   (proj (D,P), used as x @ proj)
//   hf         vision_model.{embeddings.{patch_embedding, class_embedding, position_embedding},
//              pre_layrnorm, encoder.layers.{i}.*, post_layernorm}, visual_projection
//              (HF spells pre_layrnorm so; visual_projection.weight (P,D), a Linear without bias)
// The residual blocks are clip_text.h's layers, built without the causal mask. Both layouts
// compute: x = [cls, conv(pixels)] + pos; ln_pre; blocks; ln_post(x[:,0]) projected.
//
// Legend: B batch, S image size, N patches ((S / patch)^2), D width, P projection dim.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include <filesystem>
#include <string>

#include "microdit/encoders/clip_text.h"

namespace microdit::encoders {

struct CLIPVisionConfig {
  int64_t image_size = 224;  // S
  int64_t patch_size = 32;
  int64_t width = 768;  // D
  int64_t heads = 12;
  int64_t layers = 12;
  double mlp_ratio = 4.0;
  CLIPTextActivation activation = CLIPTextActivation::quick_gelu;
  double layer_norm_eps = 1e-5;
  int64_t projection_dim = 512;  // P
  CLIPTextLayout layout = CLIPTextLayout::hf;

  int64_t grid() const { return image_size / patch_size; }  // patches per side
  // Throws std::invalid_argument naming the first field out of range.
  void validate() const;
  // The config of the residual blocks: clip_text's layer, non-causal.
  CLIPTextConfig layer_config() const;

  // An HF CLIPConfig (config.json of a CLIPModel): its "vision_config" (keys left out take HF's
  // CLIPVisionConfig defaults) and the top-level "projection_dim" (default 512).
  static CLIPVisionConfig from_hf_json(const io::Json& json);
  // An open_clip model config: "vision_cfg" (open_clip's CLIPVisionCfg defaults; heads =
  // width / head_width), "embed_dim" and "quick_gelu". Options this tower does not implement
  // (timm towers, attentional pooling, other pool types, LayerScale, no ln_pre, ...) throw
  // naming the key.
  static CLIPVisionConfig from_open_clip_json(const io::Json& json);
};

class CLIPVisionEncoderImpl : public torch::nn::Module {
 public:
  explicit CLIPVisionEncoderImpl(const CLIPVisionConfig& config);

  // pixels (B,3,S,S), normalized as the model's preprocessing does -> (B,P) image embeddings
  // (HF get_image_features, open_clip encode_image), not normalized.
  at::Tensor forward(const at::Tensor& pixels);

  const CLIPVisionConfig& config() const { return config_; }

  torch::nn::Conv2d patch_embedding{nullptr};  // (D,3,patch,patch), no bias; open_clip: conv1
  at::Tensor class_embedding;                  // (D)
  at::Tensor positional_embedding;             // (N+1, D); hf: position_embedding.weight
  torch::nn::LayerNorm ln_pre{nullptr};        // hf: pre_layrnorm
  std::vector<CLIPTextLayer> layers;
  torch::nn::LayerNorm ln_post{nullptr};  // hf: post_layernorm
  at::Tensor proj;                        // open_clip: (D,P)
  torch::nn::Linear visual_projection{nullptr};  // hf: weight (P,D)

 private:
  void register_hf(const torch::nn::ModuleList& blocks);
  void register_open_clip(const torch::nn::ModuleList& blocks);

  CLIPVisionConfig config_;
};
TORCH_MODULE(CLIPVisionEncoder);

// Strict: takes the image-tower keys of a full CLIP state dict (hf vision_model.* and
// visual_projection.*, open_clip visual.*; HF's position_ids buffer dropped), requires every
// tower tensor with the model's shape and nothing else under those prefixes; throws
// std::runtime_error listing each problem by key. Tensors are converted to the module's dtype
// and device.
void load_clip_vision_state_dict(CLIPVisionEncoder& encoder, const io::TensorMap& tensors);

// Compares the config's layer count, width, patch size, token count and projection dim with the
// image tower's tensors in `tensors` (a full CLIP state dict, the config's layout); throws one line
// naming `config_source` and the first difference. Run before the tower is built: a config of
// another size would build it first.
void check_clip_vision_config(const CLIPVisionConfig& config, const io::TensorMap& tensors,
                              const std::string& config_source);

}  // namespace microdit::encoders
