// CLIP text transformer in the open_clip and HF layouts (see clip_text.h).
#include "microdit/encoders/clip_text.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "microdit/io/config_check.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/io/torch_checkpoint.h"

namespace microdit::encoders {

namespace {

bool is_hf(const CLIPTextConfig& config) { return config.layout == CLIPTextLayout::hf; }

torch::nn::LayerNorm layer_norm(const CLIPTextConfig& config) {
  return torch::nn::LayerNorm(
      torch::nn::LayerNormOptions({config.width}).eps(config.layer_norm_eps));
}

// A plain container module, only there to give its children the original dotted names.
std::shared_ptr<torch::nn::Module> container() { return std::make_shared<torch::nn::Module>(); }

int64_t json_int(const io::Json& json, std::string_view key, int64_t fallback) {
  return clip_config_int(json, key, fallback, "CLIP text config");
}

}  // namespace

int64_t clip_config_int(const io::Json& json, std::string_view key, int64_t fallback,
                        std::string_view what) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  const auto n = io::json_int64(*value);
  if (!n) {
    throw std::invalid_argument(
        c10::str(what, ": ", key, " must be an integer, got ", value->dump()));
  }
  return *n;
}

double clip_config_double(const io::Json& json, std::string_view key, double fallback,
                          std::string_view what) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_number()) {
    throw std::invalid_argument(c10::str(what, ": ", key, " must be a number, got ", value->dump()));
  }
  return io::json_to_double(*value);
}

std::string_view to_string(CLIPTextLayout layout) {
  return layout == CLIPTextLayout::hf ? "hf" : "open_clip";
}

std::string_view to_string(CLIPTextActivation activation) {
  return activation == CLIPTextActivation::gelu ? "gelu" : "quick_gelu";
}

CLIPTextActivation parse_clip_text_activation(std::string_view name) {
  if (name == "quick_gelu") return CLIPTextActivation::quick_gelu;
  if (name == "gelu") return CLIPTextActivation::gelu;
  throw std::invalid_argument(c10::str("CLIP text config: hidden_act \"", name,
                                       "\" is not supported (expected quick_gelu or gelu)"));
}

CLIPTextActivation open_clip_activation(const io::Json& model_config) {
  const io::Json* quick = io::json_find(model_config, "quick_gelu");
  return quick != nullptr && *quick == true ? CLIPTextActivation::quick_gelu
                                            : CLIPTextActivation::gelu;
}

// ---------------------------------------------------------------------------------------------
// Config

int64_t CLIPTextConfig::mlp_width() const {
  return static_cast<int64_t>(static_cast<double>(width) * mlp_ratio);
}

void CLIPTextConfig::validate(std::string_view what) const {
  auto require = [what](bool ok, std::string_view field, auto value, std::string_view expected) {
    require_clip_config(ok, what, field, value, expected);
  };
  require(vocab_size > 0, "vocab_size", vocab_size, "> 0");
  require(context_length > 0, "context_length", context_length, "> 0");
  require(width > 0, "width", width, "> 0");
  require(heads > 0 && width % heads == 0, "heads", heads, c10::str("a divisor of width ", width));
  require(layers >= 0, "layers", layers, ">= 0");
  // The product is checked before mlp_width() converts it: past int64 the conversion is undefined.
  require(mlp_ratio > 0.0 && static_cast<double>(width) * mlp_ratio < 0x1p62 && mlp_width() > 0,
          "mlp_ratio", mlp_ratio, "> 0, with width * mlp_ratio below 2^62");
  require(layer_norm_eps > 0.0, "layer_norm_eps", layer_norm_eps, "> 0");
  require(projection_dim >= 0, "projection_dim", projection_dim, ">= 0 (0: none)");
}

CLIPTextConfig CLIPTextConfig::dfn5b_vit_h_14_378() {
  return CLIPTextConfig{.vocab_size = 49408,
                        .context_length = 77,
                        .width = 1024,
                        .heads = 16,
                        .layers = 24,
                        .mlp_ratio = 4.0,
                        .activation = CLIPTextActivation::quick_gelu,
                        .layer_norm_eps = 1e-5,
                        .layout = CLIPTextLayout::open_clip};
}

CLIPTextConfig CLIPTextConfig::from_hf_json(const io::Json& json) {
  if (!json.is_object()) {
    throw std::invalid_argument(
        c10::str("CLIP text config: expected a JSON object, got ", json.type_name()));
  }
  const io::Json* text = io::json_find(json, "text_config");
  const io::Json& cfg = text != nullptr && text->is_object() ? *text : json;
  // HF CLIPTextConfig defaults, not DFN5B's.
  CLIPTextConfig config = read_hf_transformer_fields(cfg, {512, 8, 12, 2048}, "CLIP text config");
  config.vocab_size = json_int(cfg, "vocab_size", 49408);
  config.context_length = json_int(cfg, "max_position_embeddings", 77);
  config.validate();
  return config;
}

CLIPTextConfig read_hf_transformer_fields(const io::Json& cfg, const HfTransformerDefaults& defaults,
                                          std::string_view what) {
  CLIPTextConfig config;
  config.layout = CLIPTextLayout::hf;
  config.width = clip_config_int(cfg, "hidden_size", defaults.hidden_size, what);
  config.heads = clip_config_int(cfg, "num_attention_heads", defaults.num_attention_heads, what);
  config.layers = clip_config_int(cfg, "num_hidden_layers", defaults.num_hidden_layers, what);
  const int64_t intermediate =
      clip_config_int(cfg, "intermediate_size", defaults.intermediate_size, what);
  if (const io::Json* act = io::json_find(cfg, "hidden_act"); act != nullptr && !act->is_null()) {
    if (!act->is_string()) {
      throw std::invalid_argument(
          c10::str(what, ": hidden_act must be a string, got ", act->dump()));
    }
    config.activation = parse_clip_text_activation(io::json_to_string(*act));
  }
  config.layer_norm_eps = clip_config_double(cfg, "layer_norm_eps", 1e-5, what);
  if (config.width <= 0) config.validate(what);  // names the width before dividing by it
  if (intermediate <= 0 || intermediate >= (int64_t{1} << 53)) {  // exact in a double
    throw std::invalid_argument(
        c10::str(what, ": intermediate_size = ", intermediate, ", expected > 0 and below 2^53"));
  }
  config.mlp_ratio = static_cast<double>(intermediate) / static_cast<double>(config.width);
  if (config.mlp_width() != intermediate) {
    throw std::invalid_argument(c10::str(what, ": intermediate_size ", intermediate,
                                         " is not representable as width ", config.width,
                                         " * mlp_ratio"));
  }
  return config;
}

CLIPTextConfig CLIPTextConfig::from_open_clip_json(const io::Json& json) {
  const io::Json* text = io::json_find(json, "text_cfg");
  if (text == nullptr || !text->is_object()) {
    throw std::invalid_argument("open_clip model config: no \"text_cfg\" object");
  }
  CLIPTextConfig config;  // open_clip's CLIPTextCfg defaults
  config.layout = CLIPTextLayout::open_clip;
  config.vocab_size = json_int(*text, "vocab_size", 49408);
  config.context_length = json_int(*text, "context_length", 77);
  config.width = json_int(*text, "width", 512);
  config.heads = json_int(*text, "heads", 8);
  config.layers = json_int(*text, "layers", 12);
  if (const io::Json* ratio = io::json_find(*text, "mlp_ratio");
      ratio != nullptr && !ratio->is_null()) {
    config.mlp_ratio = io::json_to_double(*ratio);
  }
  config.activation = open_clip_activation(json);
  config.validate();
  return config;
}

// ---------------------------------------------------------------------------------------------
// Modules

CLIPTextAttentionImpl::CLIPTextAttentionImpl(const CLIPTextConfig& config)
    : heads(config.heads), causal(config.causal) {
  const int64_t d = config.width;
  if (is_hf(config)) {
    q_proj = register_module("q_proj", torch::nn::Linear(d, d));
    k_proj = register_module("k_proj", torch::nn::Linear(d, d));
    v_proj = register_module("v_proj", torch::nn::Linear(d, d));
  } else {
    // nn.MultiheadAttention's initialisation: xavier-uniform weight, zero bias.
    in_proj_weight = register_parameter("in_proj_weight", at::empty({3 * d, d}));
    in_proj_bias = register_parameter("in_proj_bias", at::zeros({3 * d}));
    const double bound = std::sqrt(6.0 / static_cast<double>(d + 3 * d));
    at::NoGradGuard no_grad;
    in_proj_weight.uniform_(-bound, bound);
  }
  out_proj = register_module("out_proj", torch::nn::Linear(d, d));
}

at::Tensor CLIPTextAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2);
  at::Tensor q, k, v;  // (B,T,D) each
  if (q_proj) {
    q = q_proj(x);
    k = k_proj(x);
    v = v_proj(x);
  } else {
    const auto qkv = at::linear(x, in_proj_weight, in_proj_bias).chunk(3, -1);
    q = qkv[0];
    k = qkv[1];
    v = qkv[2];
  }
  auto split_heads = [&](const at::Tensor& y) {  // (B,T,D) -> (B,H,T,D/H)
    return y.view({b, t, heads, d / heads}).transpose(1, 2);
  };
  // is_causal applies open_clip's build_causal_mask (-inf above the diagonal, 0 on and below)
  // and HF's causal mask; the scale is the default head_dim^-0.5 of both.
  const at::Tensor out = at::scaled_dot_product_attention(
      split_heads(q), split_heads(k), split_heads(v), /*attn_mask=*/{}, /*dropout_p=*/0.0,
      /*is_causal=*/causal);  // (B,H,T,D/H)
  return out_proj(out.transpose(1, 2).reshape({b, t, d}));
}

CLIPTextMlpImpl::CLIPTextMlpImpl(const CLIPTextConfig& config) : activation(config.activation) {
  const bool hf = is_hf(config);
  fc1 = register_module(hf ? "fc1" : "c_fc", torch::nn::Linear(config.width, config.mlp_width()));
  fc2 = register_module(hf ? "fc2" : "c_proj", torch::nn::Linear(config.mlp_width(), config.width));
}

at::Tensor CLIPTextMlpImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1(x);  // (B,T,F)
  h = activation == CLIPTextActivation::quick_gelu ? h * at::sigmoid(1.702 * h) : at::gelu(h);
  return fc2(h);
}

CLIPTextLayerImpl::CLIPTextLayerImpl(const CLIPTextConfig& config) {
  const bool hf = is_hf(config);
  ln_1 = register_module(hf ? "layer_norm1" : "ln_1", layer_norm(config));
  attn = register_module(hf ? "self_attn" : "attn", CLIPTextAttention(config));
  ln_2 = register_module(hf ? "layer_norm2" : "ln_2", layer_norm(config));
  mlp = register_module("mlp", CLIPTextMlp(config));
}

at::Tensor CLIPTextLayerImpl::forward(const at::Tensor& x) {
  const at::Tensor h = x + attn(ln_1(x));
  return h + mlp(ln_2(h));
}

CLIPTextEncoderImpl::CLIPTextEncoderImpl(const CLIPTextConfig& config) : config_(config) {
  config_.validate();
  const int64_t v = config_.vocab_size, d = config_.width, n = config_.context_length;
  torch::nn::ModuleList blocks;
  for (int64_t i = 0; i < config_.layers; ++i) {
    layers.push_back(CLIPTextLayer(config_));
    blocks->push_back(layers.back());
  }
  // Initialisation follows open_clip's TextTransformer for the embeddings; the weights are meant
  // to be loaded, so the rest keeps LibTorch's defaults.
  token_embedding = torch::nn::Embedding(v, d);
  ln_final = layer_norm(config_);
  at::NoGradGuard no_grad;
  token_embedding->weight.normal_(0.0, 0.02);
  if (is_hf(config_)) {
    auto text_model = register_module("text_model", container());
    auto embeddings = text_model->register_module("embeddings", container());
    embeddings->register_module("token_embedding", token_embedding);
    position_embedding =
        embeddings->register_module("position_embedding", torch::nn::Embedding(n, d));
    position_embedding->weight.normal_(0.0, 0.01);
    positional_embedding = position_embedding->weight;
    text_model->register_module("encoder", container())->register_module("layers", blocks);
    text_model->register_module("final_layer_norm", ln_final);
  } else {
    register_module("token_embedding", token_embedding);
    positional_embedding = register_parameter("positional_embedding", at::empty({n, d}));
    positional_embedding.normal_(0.0, 0.01);
    register_module("transformer", container())->register_module("resblocks", blocks);
    register_module("ln_final", ln_final);
  }
  register_projection();
}

void CLIPTextEncoderImpl::register_projection() {
  const int64_t d = config_.width, p = config_.projection_dim;
  if (p == 0) return;
  if (is_hf(config_)) {
    text_projection_linear = register_module(
        "text_projection", torch::nn::Linear(torch::nn::LinearOptions(d, p).bias(false)));
  } else {
    at::NoGradGuard no_grad;  // open_clip's init: normal with std width^-0.5
    text_projection =
        register_parameter("text_projection", at::empty({d, p}).normal_(0.0, std::pow(d, -0.5)));
  }
}

at::Tensor CLIPTextEncoderImpl::forward(const at::Tensor& ids) {
  if (ids.dim() != 2 || !at::isIntegralType(ids.scalar_type(), /*includeBool=*/false)) {
    throw std::invalid_argument(
        c10::str("CLIPTextEncoder: ids must be (B,T) integer token ids, got ", ids.scalar_type(),
                 io::shape_string(ids.sizes())));
  }
  const int64_t t = ids.size(1);
  if (t < 1 || t > config_.context_length) {
    throw std::invalid_argument(c10::str("CLIPTextEncoder: ", t,
                                         " tokens per caption, expected 1..",
                                         config_.context_length, " (context_length)"));
  }
  if (ids.numel() > 0) {
    const auto [lo, hi] = at::aminmax(ids);
    const int64_t min_id = lo.item<int64_t>(), max_id = hi.item<int64_t>();
    if (min_id < 0 || max_id >= config_.vocab_size) {
      throw std::invalid_argument(c10::str("CLIPTextEncoder: token id ",
                                           min_id < 0 ? min_id : max_id, " is outside [0, ",
                                           config_.vocab_size, ") (vocab_size)"));
    }
  }
  const at::Tensor tokens = ids.to(token_embedding->weight.device(), at::kLong);
  at::Tensor x = token_embedding(tokens) + positional_embedding.slice(0, 0, t);  // (B,T,D)
  for (auto& layer : layers) x = layer(x);
  return ln_final(x);
}

at::Tensor CLIPTextEncoderImpl::pooled(const at::Tensor& ids) {
  const at::Tensor states = forward(ids);  // (B,T,D)
  const int64_t b = states.size(0), d = states.size(2);
  const at::Tensor eot = ids.to(states.device(), at::kLong).argmax(-1);  // (B)
  return states.gather(1, eot.view({b, 1, 1}).expand({b, 1, d})).squeeze(1);
}

at::Tensor CLIPTextEncoderImpl::projected(const at::Tensor& ids) {
  if (config_.projection_dim == 0) {
    throw std::logic_error("CLIPTextEncoder::projected: built without a text projection "
                           "(projection_dim 0)");
  }
  const at::Tensor x = pooled(ids);  // (B,D)
  return text_projection_linear ? text_projection_linear(x) : x.matmul(text_projection);
}

// ---------------------------------------------------------------------------------------------
// Loading

bool is_ignored_clip_key(std::string_view key) {
  auto key_or_child = [&](std::string_view name) {
    return key == name ||
           (key.starts_with(name) && key.size() > name.size() && key[name.size()] == '.');
  };
  return key_or_child("visual") || key_or_child("vision_model") ||
         key_or_child("visual_projection") || key_or_child("text_projection") ||
         key_or_child("logit_scale") || key == "position_ids" || key.ends_with(".position_ids");
}

std::optional<CLIPTextLayout> detect_clip_text_layout(const io::TensorMap& tensors) {
  if (tensors.contains("text_model.embeddings.token_embedding.weight") ||
      tensors.contains("embeddings.token_embedding.weight")) {
    return CLIPTextLayout::hf;
  }
  if (tensors.contains("token_embedding.weight")) return CLIPTextLayout::open_clip;
  return std::nullopt;
}

void load_clip_text_state_dict(CLIPTextEncoder& encoder, const io::TensorMap& tensors) {
  const CLIPTextLayout layout = encoder->config().layout;
  if (const auto found = detect_clip_text_layout(tensors); found && *found != layout) {
    throw std::runtime_error(c10::str("the weights are in the ", to_string(*found),
                                      " layout but the encoder was built with the ",
                                      to_string(layout), " layout"));
  }
  // A CLIPTextModel held by itself, as transformers 5 names its modules, lacks the text_model.
  // prefix of released HF checkpoints.
  const bool add_prefix = layout == CLIPTextLayout::hf &&
                          tensors.contains("embeddings.token_embedding.weight") &&
                          !tensors.contains("text_model.embeddings.token_embedding.weight");
  const bool keep_projection = encoder->config().projection_dim > 0;
  io::TensorMap text_tower;
  for (const auto& [key, tensor] : tensors) {
    if (keep_projection && (key == "text_projection" || key == "text_projection.weight")) {
      text_tower.emplace(key, tensor);
    } else if (!is_ignored_clip_key(key)) {
      text_tower.emplace(add_prefix ? "text_model." + key : key, tensor);
    }
  }
  io::load_state_dict(*encoder, text_tower);  // strict by default
}

void check_clip_text_config(const CLIPTextConfig& c, const io::TensorMap& tensors,
                            const std::string& config_source) {
  const CLIPTextLayout layout = detect_clip_text_layout(tensors).value_or(c.layout);
  const bool hf = layout == CLIPTextLayout::hf;
  const std::string prefix =
      hf && !tensors.contains("embeddings.token_embedding.weight") ? "text_model." : "";
  const std::string tokens = hf ? prefix + "embeddings.token_embedding.weight"
                                : "token_embedding.weight";
  const std::string positions = hf ? prefix + "embeddings.position_embedding.weight"
                                   : "positional_embedding";
  const std::string layers = hf ? prefix + "encoder.layers." : "transformer.resblocks.";
  const io::ConfigCheck check(tensors, config_source, "the text tower's ");
  check.expect_layers("layer count", c.layers, layers);
  check.expect("width", c.width, check.size(tokens, 2, 1), tokens);
  check.expect("vocab_size", c.vocab_size, check.size(tokens, 2, 0), tokens);
  check.expect("context_length", c.context_length, check.size(positions, 2, 0), positions);
}

void load_clip_text_weights(CLIPTextEncoder& encoder, const std::filesystem::path& path) {
  load_clip_text_weights(encoder, read_clip_text_weights(path), path);
}

io::TensorMap read_clip_text_weights(const std::filesystem::path& path) {
  return path.extension() == ".safetensors" ? io::load_safetensors(path)
                                            : io::load_torch_state_dict(path);
}

void load_clip_text_weights(CLIPTextEncoder& encoder, const io::TensorMap& tensors,
                            const std::filesystem::path& path) {
  try {
    load_clip_text_state_dict(encoder, tensors);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(c10::str(path.string(), ": ", e.what()));
  }
}

}  // namespace microdit::encoders
