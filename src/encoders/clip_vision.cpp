// CLIP image tower in the open_clip and HF layouts (see clip_vision.h).
#include "microdit/encoders/clip_vision.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "microdit/io/config_check.h"
#include "microdit/io/state_dict.h"

namespace microdit::encoders {

namespace {

constexpr std::string_view kVisionWhat = "CLIP vision config";
constexpr std::string_view kOpenClipWhat = "open_clip vision_cfg";

bool is_hf(const CLIPVisionConfig& config) { return config.layout == CLIPTextLayout::hf; }

std::shared_ptr<torch::nn::Module> container() { return std::make_shared<torch::nn::Module>(); }

torch::nn::LayerNorm layer_norm(const CLIPVisionConfig& config) {
  return torch::nn::LayerNorm(
      torch::nn::LayerNormOptions({config.width}).eps(config.layer_norm_eps));
}

// open_clip options that change the tower's function; each must be absent or at its default.
void reject_unsupported_open_clip_options(const io::Json& vision) {
  auto reject_if = [](bool bad, std::string_view key, const io::Json& value) {
    if (bad) {
      throw std::invalid_argument(c10::str(kOpenClipWhat, ": ", key, " = ", value.dump(),
                                           " is not supported by this image tower"));
    }
  };
  for (const auto& [key, value] : io::json_to_object(vision)) {
    const bool set = !value.is_null() && value != false;
    if (key == "timm_model_name" || key == "ls_init_value" || key == "attentional_pool" ||
        key == "no_ln_pre" || key == "final_ln_after_pool" || key == "act_kwargs" ||
        key == "norm_kwargs") {
      reject_if(set, key, value);
    } else if (key == "pool_type") {
      reject_if(value != "tok", key, value);
    } else if (key == "layers" || key == "image_size") {
      reject_if(!io::json_int64(value), key, value);  // lists: ModifiedResNet, non-square images
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

void CLIPVisionConfig::validate() const {
  require_clip_config(patch_size > 0, kVisionWhat, "patch_size", patch_size, "> 0");
  require_clip_config(image_size > 0 && image_size % patch_size == 0, kVisionWhat, "image_size",
                      image_size, c10::str("a positive multiple of patch_size ", patch_size));
  // The token count grid^2 + 1 must be defined; released towers have a few dozen patches per side.
  require_clip_config(grid() <= 4096, kVisionWhat, "image_size", image_size,
                      c10::str("at most 4096 patches of ", patch_size, " per side"));
  require_clip_config(projection_dim > 0, kVisionWhat, "projection_dim", projection_dim, "> 0");
  layer_config().validate(kVisionWhat);
}

CLIPTextConfig CLIPVisionConfig::layer_config() const {
  CLIPTextConfig config;
  config.context_length = grid() * grid() + 1;
  config.width = width;
  config.heads = heads;
  config.layers = layers;
  config.mlp_ratio = mlp_ratio;
  config.activation = activation;
  config.layer_norm_eps = layer_norm_eps;
  config.layout = layout;
  config.causal = false;
  return config;
}

CLIPVisionConfig CLIPVisionConfig::from_hf_json(const io::Json& json) {
  const io::Json* vision = io::json_find(json, "vision_config");
  if (vision == nullptr || !vision->is_object()) {
    throw std::invalid_argument("CLIP config: no \"vision_config\" object");
  }
  const CLIPTextConfig layer = read_hf_transformer_fields(*vision, {768, 12, 12, 3072}, kVisionWhat);
  CLIPVisionConfig config;  // HF CLIPVisionConfig defaults
  config.layout = CLIPTextLayout::hf;
  config.image_size = clip_config_int(*vision, "image_size", 224, kVisionWhat);
  config.patch_size = clip_config_int(*vision, "patch_size", 32, kVisionWhat);
  config.width = layer.width;
  config.heads = layer.heads;
  config.layers = layer.layers;
  config.mlp_ratio = layer.mlp_ratio;
  config.activation = layer.activation;
  config.layer_norm_eps = layer.layer_norm_eps;
  config.projection_dim = clip_config_int(json, "projection_dim", 512, "CLIP config");
  config.validate();
  return config;
}

CLIPVisionConfig CLIPVisionConfig::from_open_clip_json(const io::Json& json) {
  const io::Json* vision = io::json_find(json, "vision_cfg");
  if (vision == nullptr || !vision->is_object()) {
    throw std::invalid_argument("open_clip model config: no \"vision_cfg\" object");
  }
  reject_unsupported_open_clip_options(*vision);
  CLIPVisionConfig config;  // open_clip CLIPVisionCfg defaults
  config.layout = CLIPTextLayout::open_clip;
  config.image_size = clip_config_int(*vision, "image_size", 224, kOpenClipWhat);
  config.patch_size = clip_config_int(*vision, "patch_size", 16, kOpenClipWhat);
  config.width = clip_config_int(*vision, "width", 768, kOpenClipWhat);
  config.layers = clip_config_int(*vision, "layers", 12, kOpenClipWhat);
  config.mlp_ratio = clip_config_double(*vision, "mlp_ratio", 4.0, kOpenClipWhat);
  const int64_t head_width = clip_config_int(*vision, "head_width", 64, kOpenClipWhat);
  if (head_width <= 0 || config.width % head_width != 0) {
    throw std::invalid_argument(c10::str(kOpenClipWhat, ": head_width ", head_width,
                                         " does not divide width ", config.width));
  }
  config.heads = config.width / head_width;
  config.projection_dim = clip_config_int(json, "embed_dim", 512, "open_clip model config");
  config.activation = open_clip_activation(json);
  config.validate();
  return config;
}

// ---------------------------------------------------------------------------------------------
// Module

CLIPVisionEncoderImpl::CLIPVisionEncoderImpl(const CLIPVisionConfig& config) : config_(config) {
  config_.validate();
  const int64_t d = config_.width, p = config_.patch_size, n = config_.grid() * config_.grid();
  const CLIPTextConfig layer_config = config_.layer_config();
  torch::nn::ModuleList blocks;
  for (int64_t i = 0; i < config_.layers; ++i) {
    layers.push_back(CLIPTextLayer(layer_config));
    blocks->push_back(layers.back());
  }
  patch_embedding = torch::nn::Conv2d(torch::nn::Conv2dOptions(3, d, p).stride(p).bias(false));
  ln_pre = layer_norm(config_);
  ln_post = layer_norm(config_);
  // open_clip's initialisation (scale width^-0.5); the weights are meant to be loaded.
  const double scale = std::pow(static_cast<double>(d), -0.5);
  at::NoGradGuard no_grad;
  class_embedding = at::randn({d}) * scale;
  positional_embedding = at::randn({n + 1, d}) * scale;
  if (is_hf(config_)) {
    register_hf(blocks);
  } else {
    register_open_clip(blocks);
  }
}

void CLIPVisionEncoderImpl::register_hf(const torch::nn::ModuleList& blocks) {
  const int64_t d = config_.width, n = config_.grid() * config_.grid();
  auto vision_model = register_module("vision_model", container());
  auto embeddings = vision_model->register_module("embeddings", container());
  embeddings->register_module("patch_embedding", patch_embedding);
  class_embedding = embeddings->register_parameter("class_embedding", class_embedding);
  auto position = embeddings->register_module("position_embedding", torch::nn::Embedding(n + 1, d));
  position->weight.copy_(positional_embedding);
  positional_embedding = position->weight;
  vision_model->register_module("pre_layrnorm", ln_pre);
  vision_model->register_module("encoder", container())->register_module("layers", blocks);
  vision_model->register_module("post_layernorm", ln_post);
  visual_projection = register_module(
      "visual_projection",
      torch::nn::Linear(torch::nn::LinearOptions(d, config_.projection_dim).bias(false)));
}

void CLIPVisionEncoderImpl::register_open_clip(const torch::nn::ModuleList& blocks) {
  const int64_t d = config_.width;
  auto visual = register_module("visual", container());
  visual->register_module("conv1", patch_embedding);
  class_embedding = visual->register_parameter("class_embedding", class_embedding);
  positional_embedding = visual->register_parameter("positional_embedding", positional_embedding);
  visual->register_module("ln_pre", ln_pre);
  visual->register_module("transformer", container())->register_module("resblocks", blocks);
  visual->register_module("ln_post", ln_post);
  proj = visual->register_parameter(
      "proj", at::randn({d, config_.projection_dim}) * std::pow(static_cast<double>(d), -0.5));
}

at::Tensor CLIPVisionEncoderImpl::forward(const at::Tensor& pixels) {
  const int64_t s = config_.image_size;
  if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != s || pixels.size(3) != s) {
    throw std::invalid_argument(c10::str("CLIPVisionEncoder: pixels must be (B,3,", s, ",", s,
                                         "), got ", io::shape_string(pixels.sizes())));
  }
  const at::Tensor x0 = pixels.to(class_embedding.device(), class_embedding.scalar_type());
  const int64_t b = x0.size(0), d = config_.width;
  const at::Tensor patches = patch_embedding(x0).flatten(2).transpose(1, 2);  // (B,N,D)
  const at::Tensor cls = class_embedding.view({1, 1, d}).expand({b, 1, d});  // (B,1,D)
  at::Tensor x = ln_pre(at::cat({cls, patches}, 1) + positional_embedding);  // (B,N+1,D)
  for (auto& layer : layers) x = layer(x);
  const at::Tensor pooled = ln_post(x.select(1, 0));  // (B,D): the class token
  return visual_projection ? visual_projection(pooled) : pooled.matmul(proj);
}

// ---------------------------------------------------------------------------------------------
// Loading

void load_clip_vision_state_dict(CLIPVisionEncoder& encoder, const io::TensorMap& tensors) {
  const bool hf = is_hf(encoder->config());
  auto in_tower = [hf](std::string_view key) {
    if (hf) return key.starts_with("vision_model.") || key.starts_with("visual_projection.");
    return key.starts_with("visual.");
  };
  io::TensorMap tower;
  for (const auto& [key, tensor] : tensors) {
    if (in_tower(key) && !key.ends_with(".position_ids")) tower.emplace(key, tensor);
  }
  if (tower.empty()) {
    throw std::runtime_error(c10::str("no image-tower tensors in the ",
                                      to_string(encoder->config().layout), " layout (",
                                      hf ? "vision_model.*" : "visual.*", ")"));
  }
  io::load_state_dict(*encoder, tower);  // strict by default
}

void check_clip_vision_config(const CLIPVisionConfig& c, const io::TensorMap& tensors,
                              const std::string& config_source) {
  const bool hf = is_hf(c);
  const std::string tower = hf ? "vision_model." : "visual.";
  const std::string layers = tower + (hf ? "encoder.layers." : "transformer.resblocks.");
  const std::string cls = tower + (hf ? "embeddings.class_embedding" : "class_embedding");
  const std::string patches = tower + (hf ? "embeddings.patch_embedding.weight" : "conv1.weight");
  const std::string positions =
      tower + (hf ? "embeddings.position_embedding.weight" : "positional_embedding");
  const std::string projection = hf ? "visual_projection.weight" : "visual.proj";
  const io::ConfigCheck check(tensors, config_source, "the image tower's ");
  check.expect_layers("layer count", c.layers, layers);
  check.expect("width", c.width, check.size(cls, 1, 0), cls);
  check.expect("patch_size", c.patch_size, check.size(patches, 4, 2), patches);
  check.expect("token count (image_size / patch_size)^2 + 1", c.grid() * c.grid() + 1,
               check.size(positions, 2, 0), positions);
  check.expect("projection_dim", c.projection_dim, check.size(projection, 2, hf ? 0 : 1),
               projection);
}

}  // namespace microdit::encoders
