// diffusers AutoencoderKL in LibTorch (see autoencoder_kl.h).
// Legend: B batch, C channels, H W image size, h w latent size, Z latent channels, T tokens.
#include "microdit/encoders/autoencoder_kl.h"

#include <ATen/core/grad_mode.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "microdit/io/config_check.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/io/torch_checkpoint.h"
#include "microdit/util/error_message.h"

namespace microdit::encoders {

namespace {

constexpr double kNormEps = 1e-6;  // every GroupNorm of the VAE
constexpr double kLogvarMin = -30.0, kLogvarMax = 20.0;

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kNormEps));
}

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t padding = 0,
                       int64_t stride = 1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).padding(padding).stride(stride));
}

// ---- config.json --------------------------------------------------------------------------

int64_t json_int(const io::Json& json, std::string_view key, int64_t fallback) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!io::json_int64(*value)) {
    throw std::invalid_argument(
        c10::str("AutoencoderKL config: '", key, "' must be an integer, got ", value->type_name()));
  }
  return io::json_to_int64(*value);
}

double json_double(const io::Json& json, std::string_view key, double fallback) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_number()) {
    throw std::invalid_argument(
        c10::str("AutoencoderKL config: '", key, "' must be a number, got ", value->type_name()));
  }
  return io::json_to_double(*value);
}

bool json_bool(const io::Json& json, std::string_view key, bool fallback) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_boolean()) {
    throw std::invalid_argument(c10::str("AutoencoderKL config: '", key,
                                         "' must be true or false, got ", value->type_name()));
  }
  return io::json_to_bool(*value);
}

const io::JsonArray* json_array(const io::Json& json, std::string_view key) {
  const io::Json* value = io::json_find(json, key);
  if (value == nullptr || value->is_null()) return nullptr;
  if (!value->is_array()) {
    throw std::invalid_argument(
        c10::str("AutoencoderKL config: '", key, "' must be an array, got ", value->type_name()));
  }
  return &io::json_to_array(*value);
}

std::optional<std::vector<double>> json_doubles(const io::Json& json, std::string_view key) {
  const io::JsonArray* array = json_array(json, key);
  if (array == nullptr) return std::nullopt;
  std::vector<double> values;
  for (const io::Json& item : *array) {
    if (!item.is_number()) {
      throw std::invalid_argument(
          c10::str("AutoencoderKL config: '", key, "' must hold numbers only"));
    }
    values.push_back(io::json_to_double(item));
  }
  return values;
}

// Only the block types this implementation has: the plain (non-attention) VAE blocks.
void check_block_types(const io::Json& json, std::string_view key, std::string_view expected,
                       std::size_t levels) {
  const io::JsonArray* types = json_array(json, key);
  if (types == nullptr) return;
  if (types->size() != levels) {
    throw std::invalid_argument(c10::str("AutoencoderKL config: '", key, "' has ", types->size(),
                                         " entries, block_out_channels has ", levels));
  }
  for (const io::Json& type : *types) {
    if (type != expected) {
      throw std::invalid_argument(c10::str("AutoencoderKL config: '", key, "' entry ",
                                           type.is_string() ? type.get<std::string>() : type.dump(),
                                           " is not supported (only ", expected, ")"));
    }
  }
}

// ---- tiling ---------------------------------------------------------------------------------

// diffusers blend_v / blend_h, in place on `b`: the first rows (or columns) of `b` fade in from
// the last ones of `a` with weights y / extent.
void blend(const at::Tensor& a, at::Tensor& b, int64_t dim, int64_t extent) {
  extent = std::min({a.size(dim), b.size(dim), extent});
  if (extent <= 0) return;
  std::vector<int64_t> shape(4, 1);
  shape[dim] = extent;
  const at::Tensor w = (at::arange(extent, b.options()) / static_cast<double>(extent)).view(shape);
  const at::Tensor tail = a.narrow(dim, a.size(dim) - extent, extent);
  at::Tensor head = b.narrow(dim, 0, extent);
  head.copy_(tail * (1 - w) + head * w);
}

// Runs `fn` on overlapping tiles of `input` and stitches the results: tile i starts at
// i * stride input pixels, each output tile is blended over `blend_extent` with its upper and
// left neighbours and cropped to `keep` (diffusers tiled_decode / _tiled_encode).
template <class Fn>
at::Tensor tiled(const at::Tensor& input, int64_t tile, int64_t stride, int64_t blend_extent,
                 int64_t keep, Fn&& fn) {
  std::vector<std::vector<at::Tensor>> rows;
  for (int64_t i = 0; i < input.size(2); i += stride) {
    auto& row = rows.emplace_back();
    for (int64_t j = 0; j < input.size(3); j += stride) {
      const int64_t th = std::min(tile, input.size(2) - i), tw = std::min(tile, input.size(3) - j);
      row.push_back(fn(input.slice(2, i, i + th).slice(3, j, j + tw)));
    }
  }
  std::vector<at::Tensor> stitched_rows;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::vector<at::Tensor> stitched;
    for (std::size_t j = 0; j < rows[i].size(); ++j) {
      at::Tensor& t = rows[i][j];
      if (i > 0) blend(rows[i - 1][j], t, 2, blend_extent);
      if (j > 0) blend(rows[i][j - 1], t, 3, blend_extent);
      stitched.push_back(t.slice(2, 0, keep).slice(3, 0, keep));
    }
    stitched_rows.push_back(at::cat(stitched, 3));
  }
  return at::cat(stitched_rows, 2);
}

std::string lowercase_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// diffusers < 0.14 saved the mid-block attention as `query`/`key`/`value`/`proj_attn`, and LDM
// checkpoints converted by old scripts kept them as 1x1 convs (C, C, 1, 1).
void upgrade_legacy_attention_keys(io::TensorMap& tensors) {
  static const std::pair<std::string_view, std::string_view> kRenames[] = {
      {".attentions.0.query.", ".attentions.0.to_q."},
      {".attentions.0.key.", ".attentions.0.to_k."},
      {".attentions.0.value.", ".attentions.0.to_v."},
      {".attentions.0.proj_attn.", ".attentions.0.to_out.0."}};
  io::TensorMap upgraded;
  for (auto& [key, tensor] : tensors) {
    std::string name = key;
    for (const auto& [from, to] : kRenames) {
      if (const auto pos = name.find(from); pos != std::string::npos) {
        name.replace(pos, from.size(), to);
      }
    }
    const bool attention_weight = name.find(".attentions.0.to_") != std::string::npos &&
                                  name.ends_with(".weight") && tensor.dim() == 4;
    upgraded.emplace(std::move(name), attention_weight ? tensor.flatten(1) : tensor);
  }
  tensors = std::move(upgraded);
}

}  // namespace

// ---- AutoencoderKLConfig -------------------------------------------------------------------

AutoencoderKLConfig AutoencoderKLConfig::sdxl() { return AutoencoderKLConfig{}; }

AutoencoderKLConfig AutoencoderKLConfig::kl_f8_d16() {
  AutoencoderKLConfig c;
  c.latent_channels = 16;
  c.block_out_channels = {128, 128, 256, 512};
  c.sample_size = 512;
  c.scaling_factor = 0.2614;
  return c;
}

AutoencoderKLConfig AutoencoderKLConfig::from_json(const io::Json& json) {
  if (!json.is_object()) {
    throw std::invalid_argument("AutoencoderKL config: expected a JSON object");
  }
  if (const io::Json* name = io::json_find(json, "_class_name");
      name != nullptr && name->is_string() && *name != "AutoencoderKL") {
    throw std::invalid_argument(c10::str("AutoencoderKL config: _class_name is ",
                                         name->get<std::string>(),
                                         ", expected AutoencoderKL"));
  }
  // Start from diffusers' constructor defaults, not SDXL's, for keys the file leaves out.
  AutoencoderKLConfig c;
  c.in_channels = json_int(json, "in_channels", 3);
  c.out_channels = json_int(json, "out_channels", 3);
  c.latent_channels = json_int(json, "latent_channels", 4);
  c.block_out_channels = {64};
  if (const io::JsonArray* channels = json_array(json, "block_out_channels")) {
    c.block_out_channels.clear();
    for (const io::Json& item : *channels) {
      if (!io::json_int64(item)) {
        throw std::invalid_argument(
            "AutoencoderKL config: 'block_out_channels' must hold integers only");
      }
      c.block_out_channels.push_back(io::json_to_int64(item));
    }
  }
  c.layers_per_block = json_int(json, "layers_per_block", 1);
  c.norm_num_groups = json_int(json, "norm_num_groups", 32);
  if (const io::Json* size = io::json_find(json, "sample_size");
      size != nullptr && size->is_array()) {
    const auto first = size->empty() ? std::nullopt : io::json_int64(size->front());
    if (!first) {
      throw std::invalid_argument("AutoencoderKL config: 'sample_size' must hold integers");
    }
    c.sample_size = *first;
  } else {
    c.sample_size = json_int(json, "sample_size", 32);
  }
  c.scaling_factor = json_double(json, "scaling_factor", 0.18215);
  if (const io::Json* shift = io::json_find(json, "shift_factor");
      shift != nullptr && !shift->is_null()) {
    c.shift_factor = json_double(json, "shift_factor", 0.0);
  }
  c.latents_mean = json_doubles(json, "latents_mean");
  c.latents_std = json_doubles(json, "latents_std");
  c.force_upcast = json_bool(json, "force_upcast", true);
  c.use_quant_conv = json_bool(json, "use_quant_conv", true);
  c.use_post_quant_conv = json_bool(json, "use_post_quant_conv", true);
  c.mid_block_add_attention = json_bool(json, "mid_block_add_attention", true);
  if (const io::Json* act = io::json_find(json, "act_fn");
      act != nullptr && *act != "silu") {
    throw std::invalid_argument(c10::str("AutoencoderKL config: act_fn ", act->dump(),
                                         " is not supported (only \"silu\")"));
  }
  const std::size_t levels = c.block_out_channels.size();
  check_block_types(json, "down_block_types", "DownEncoderBlock2D", levels);
  check_block_types(json, "up_block_types", "UpDecoderBlock2D", levels);
  c.validate();
  return c;
}

AutoencoderKLConfig AutoencoderKLConfig::from_json_file(const std::filesystem::path& path) {
  const io::Json json = io::read_json_file(path);
  return util::in_context(path.string(), [&] { return from_json(json); });
}

void AutoencoderKLConfig::validate() const {
  auto fail = [](const std::string& message) {
    throw std::invalid_argument("AutoencoderKL config: " + message);
  };
  if (in_channels < 1 || out_channels < 1 || latent_channels < 1) {
    fail(c10::str("in_channels, out_channels and latent_channels must be >= 1, got ", in_channels,
                  ", ", out_channels, ", ", latent_channels));
  }
  if (block_out_channels.empty()) fail("block_out_channels is empty");
  // The downsampling factor 2^(levels - 1) must be defined; released VAEs have 4 levels.
  if (block_out_channels.size() > 16) {
    fail(c10::str("block_out_channels has ", block_out_channels.size(), " levels, at most 16"));
  }
  if (layers_per_block < 1) fail(c10::str("layers_per_block must be >= 1, got ", layers_per_block));
  if (norm_num_groups < 1) fail(c10::str("norm_num_groups must be >= 1, got ", norm_num_groups));
  for (std::size_t i = 0; i < block_out_channels.size(); ++i) {
    if (block_out_channels[i] < 1 || block_out_channels[i] % norm_num_groups != 0) {
      fail(c10::str("block_out_channels[", i, "] = ", block_out_channels[i],
                    " is not a positive multiple of norm_num_groups = ", norm_num_groups));
    }
  }
  if (!(scaling_factor > 0.0)) fail(c10::str("scaling_factor must be > 0, got ", scaling_factor));
  if (latents_mean.has_value() != latents_std.has_value()) {
    fail("latents_mean and latents_std must be given together");
  }
  if (latents_mean.has_value()) {
    const auto z = static_cast<std::size_t>(latent_channels);
    if (latents_mean->size() != z || latents_std->size() != z) {
      fail(c10::str("latents_mean/latents_std have ", latents_mean->size(), "/",
                    latents_std->size(), " entries, latent_channels is ", latent_channels));
    }
  }
}

int64_t AutoencoderKLConfig::downsample_factor() const {
  return int64_t{1} << (block_out_channels.size() - 1);
}

// ---- blocks ---------------------------------------------------------------------------------

VaeResnetBlockImpl::VaeResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups) {
  norm1 = register_module("norm1", group_norm(groups, in_channels));
  conv1 = register_module("conv1", conv(in_channels, out_channels, 3, 1));
  norm2 = register_module("norm2", group_norm(groups, out_channels));
  conv2 = register_module("conv2", conv(out_channels, out_channels, 3, 1));
  if (in_channels != out_channels) {
    conv_shortcut = register_module("conv_shortcut", conv(in_channels, out_channels, 1));
  }
}

at::Tensor VaeResnetBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv1(at::silu(norm1(x)));
  h = conv2(at::silu(norm2(h)));
  return (conv_shortcut ? conv_shortcut(x) : x) + h;
}

VaeAttentionImpl::VaeAttentionImpl(int64_t channels, int64_t groups) {
  group_norm = register_module("group_norm", encoders::group_norm(groups, channels));
  to_q = register_module("to_q", torch::nn::Linear(channels, channels));
  to_k = register_module("to_k", torch::nn::Linear(channels, channels));
  to_v = register_module("to_v", torch::nn::Linear(channels, channels));
  out_proj_ = torch::nn::Linear(channels, channels);
  to_out = register_module("to_out", torch::nn::ModuleList(out_proj_));
}

at::Tensor VaeAttentionImpl::forward(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor h = group_norm(x).view({B, C, H * W}).transpose(1, 2);  // (B,T,C)
  // One head: (B,1,T,C); SDPA's default scale C^-1/2 is the single head's.
  const at::Tensor q = to_q(h).unsqueeze(1), k = to_k(h).unsqueeze(1), v = to_v(h).unsqueeze(1);
  const at::Tensor a = at::scaled_dot_product_attention(q, k, v).squeeze(1);  // (B,T,C)
  return out_proj_(a).transpose(1, 2).reshape({B, C, H, W}) + x;
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention) {
  for (int i = 0; i < 2; ++i) {
    resnet_blocks_.push_back(VaeResnetBlock(channels, channels, groups));
    resnets->push_back(resnet_blocks_.back());
  }
  if (add_attention) {
    attention_ = VaeAttention(channels, groups);
    attentions->push_back(attention_);
  }
  register_module("resnets", resnets);
  register_module("attentions", attentions);
}

at::Tensor VaeMidBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = resnet_blocks_[0](x);
  if (attention_) h = attention_(h);
  return resnet_blocks_[1](h);
}

VaeDownsampleImpl::VaeDownsampleImpl(int64_t channels) {
  conv = register_module("conv", encoders::conv(channels, channels, 3, /*padding=*/0, 2));
}

at::Tensor VaeDownsampleImpl::forward(const at::Tensor& x) {
  return conv(at::constant_pad_nd(x, {0, 1, 0, 1}, 0.0));  // asymmetric: right and bottom only
}

VaeUpsampleImpl::VaeUpsampleImpl(int64_t channels) {
  conv = register_module("conv", encoders::conv(channels, channels, 3, /*padding=*/1));
}

at::Tensor VaeUpsampleImpl::forward(const at::Tensor& x) {
  return conv(at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}));
}

VaeLevelBlockImpl::VaeLevelBlockImpl(Kind kind, int64_t in_channels, int64_t out_channels,
                                     int64_t num_resnets, int64_t groups, bool resample) {
  for (int64_t i = 0; i < num_resnets; ++i) {
    resnet_blocks_.push_back(
        VaeResnetBlock(i == 0 ? in_channels : out_channels, out_channels, groups));
    resnets->push_back(resnet_blocks_.back());
  }
  register_module("resnets", resnets);
  if (!resample) return;
  if (kind == Kind::down) {
    down_ = VaeDownsample(out_channels);
    samplers->push_back(down_);
    register_module("downsamplers", samplers);
  } else {
    up_ = VaeUpsample(out_channels);
    samplers->push_back(up_);
    register_module("upsamplers", samplers);
  }
}

at::Tensor VaeLevelBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  for (auto& resnet : resnet_blocks_) h = resnet(h);
  if (down_) h = down_(h);
  if (up_) h = up_(h);
  return h;
}

VaeEncoderImpl::VaeEncoderImpl(const AutoencoderKLConfig& config) {
  const auto& channels = config.block_out_channels;
  const int64_t groups = config.norm_num_groups;
  conv_in = register_module("conv_in", conv(config.in_channels, channels.front(), 3, 1));
  for (std::size_t i = 0; i < channels.size(); ++i) {
    const int64_t in = i == 0 ? channels.front() : channels[i - 1];
    levels_.push_back(VaeLevelBlock(VaeLevelBlockImpl::Kind::down, in, channels[i],
                                    config.layers_per_block, groups,
                                    /*resample=*/i + 1 < channels.size()));
    down_blocks->push_back(levels_.back());
  }
  register_module("down_blocks", down_blocks);
  mid_block = register_module("mid_block",
                              VaeMidBlock(channels.back(), groups, config.mid_block_add_attention));
  conv_norm_out = register_module("conv_norm_out", group_norm(groups, channels.back()));
  conv_out = register_module("conv_out", conv(channels.back(), 2 * config.latent_channels, 3, 1));
}

at::Tensor VaeEncoderImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv_in(x);  // (B,C0,H,W)
  for (auto& level : levels_) h = level(h);
  h = mid_block(h);                             // (B,C_last,h,w)
  return conv_out(at::silu(conv_norm_out(h)));  // (B,2Z,h,w)
}

VaeDecoderImpl::VaeDecoderImpl(const AutoencoderKLConfig& config) {
  const std::vector<int64_t> channels(config.block_out_channels.rbegin(),
                                      config.block_out_channels.rend());
  const int64_t groups = config.norm_num_groups;
  conv_in = register_module("conv_in", conv(config.latent_channels, channels.front(), 3, 1));
  mid_block = register_module(
      "mid_block", VaeMidBlock(channels.front(), groups, config.mid_block_add_attention));
  for (std::size_t i = 0; i < channels.size(); ++i) {
    const int64_t in = i == 0 ? channels.front() : channels[i - 1];
    levels_.push_back(VaeLevelBlock(VaeLevelBlockImpl::Kind::up, in, channels[i],
                                    config.layers_per_block + 1, groups,
                                    /*resample=*/i + 1 < channels.size()));
    up_blocks->push_back(levels_.back());
  }
  register_module("up_blocks", up_blocks);
  conv_norm_out = register_module("conv_norm_out", group_norm(groups, channels.back()));
  conv_out = register_module("conv_out", conv(channels.back(), config.out_channels, 3, 1));
}

at::Tensor VaeDecoderImpl::forward(const at::Tensor& z) {
  at::Tensor h = mid_block(conv_in(z));  // (B,C_last,h,w)
  for (auto& level : levels_) h = level(h);
  return conv_out(at::silu(conv_norm_out(h)));  // (B,3,H,W)
}

// ---- LatentDistribution ---------------------------------------------------------------------

LatentDistribution LatentDistribution::from_moments(const at::Tensor& moments) {
  TORCH_CHECK(moments.dim() == 4 && moments.size(1) % 2 == 0,
              "LatentDistribution: moments must be (B,2Z,h,w), got ",
              io::shape_string(moments.sizes()));
  const auto halves = moments.chunk(2, 1);
  LatentDistribution d;
  d.mean = halves[0];
  d.logvar = halves[1].clamp(kLogvarMin, kLogvarMax);
  d.std = at::exp(0.5 * d.logvar);
  return d;
}

at::Tensor LatentDistribution::sample(std::optional<at::Generator> generator) const {
  if (!generator.has_value()) return sample_with_noise(at::randn_like(mean));
  const at::Tensor eps =
      at::randn(mean.sizes(), *generator, mean.options().device(generator->device()));
  return sample_with_noise(eps.to(mean.device()));
}

at::Tensor LatentDistribution::sample_with_noise(const at::Tensor& eps) const {
  TORCH_CHECK(eps.sizes() == mean.sizes(), "LatentDistribution: noise of shape ",
              io::shape_string(eps.sizes()), " for latents of shape ",
              io::shape_string(mean.sizes()));
  return mean + std * eps;
}

// ---- AutoencoderKL --------------------------------------------------------------------------

AutoencoderKLImpl::AutoencoderKLImpl(AutoencoderKLConfig config) : config_(std::move(config)) {
  config_.validate();
  const int64_t z = config_.latent_channels;
  encoder = register_module("encoder", VaeEncoder(config_));
  decoder = register_module("decoder", VaeDecoder(config_));
  if (config_.use_quant_conv) quant_conv = register_module("quant_conv", conv(2 * z, 2 * z, 1));
  if (config_.use_post_quant_conv) {
    post_quant_conv = register_module("post_quant_conv", conv(z, z, 1));
  }
}

at::Tensor AutoencoderKLImpl::moments(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels,
              "AutoencoderKL::encode: expected images (B,", config_.in_channels, ",H,W), got ",
              io::shape_string(x.sizes()));
  const at::Tensor m = encoder(x.to(encoder->conv_in->weight.dtype()));
  return quant_conv ? quant_conv(m) : m;
}

LatentDistribution AutoencoderKLImpl::encode(const at::Tensor& x) {
  const int64_t f = config_.downsample_factor();
  TORCH_CHECK(x.dim() == 4 && x.size(2) % f == 0 && x.size(3) % f == 0,
              "AutoencoderKL::encode: image size must be a multiple of ", f, ", got ",
              io::shape_string(x.sizes()));
  return LatentDistribution::from_moments(moments(x));
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& z) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) == config_.latent_channels,
              "AutoencoderKL::decode: expected latents (B,", config_.latent_channels, ",h,w), got ",
              io::shape_string(z.sizes()));
  const at::Tensor h = z.to(decoder->conv_in->weight.dtype());
  return decoder(post_quant_conv ? post_quant_conv(h) : h);
}

at::Tensor AutoencoderKLImpl::decode_sliced(const at::Tensor& z, int64_t slice_size) {
  TORCH_CHECK(slice_size >= 1, "AutoencoderKL::decode_sliced: slice_size must be >= 1, got ",
              slice_size);
  if (z.size(0) <= slice_size) return decode(z);
  std::vector<at::Tensor> images;
  for (const at::Tensor& slice : z.split(slice_size, 0)) images.push_back(decode(slice));
  return at::cat(images, 0);
}

LatentDistribution AutoencoderKLImpl::encode_tiled(const at::Tensor& x, const VaeTiling& tiling) {
  const int64_t tile = tiling.tile_sample_size > 0 ? tiling.tile_sample_size : config_.sample_size;
  const int64_t latent_tile = tile / config_.downsample_factor();
  TORCH_CHECK(latent_tile >= 1 && tiling.overlap_factor >= 0.0 && tiling.overlap_factor < 1.0,
              "AutoencoderKL::encode_tiled: tile size ", tile, " and overlap ",
              tiling.overlap_factor, " are out of range");
  const int64_t f = config_.downsample_factor();
  TORCH_CHECK(x.dim() == 4 && x.size(2) % f == 0 && x.size(3) % f == 0,
              "AutoencoderKL::encode_tiled: image size must be a multiple of ", f, ", got ",
              io::shape_string(x.sizes()));
  if (x.size(2) <= tile && x.size(3) <= tile) return encode(x);
  const auto stride = static_cast<int64_t>(static_cast<double>(tile) * (1 - tiling.overlap_factor));
  const auto extent =
      static_cast<int64_t>(static_cast<double>(latent_tile) * tiling.overlap_factor);
  return LatentDistribution::from_moments(tiled(x, tile, stride, extent, latent_tile - extent,
                                                [&](const at::Tensor& t) { return moments(t); }));
}

at::Tensor AutoencoderKLImpl::decode_tiled(const at::Tensor& z, const VaeTiling& tiling) {
  const int64_t tile = tiling.tile_sample_size > 0 ? tiling.tile_sample_size : config_.sample_size;
  const int64_t latent_tile = tile / config_.downsample_factor();
  TORCH_CHECK(latent_tile >= 1 && tiling.overlap_factor >= 0.0 && tiling.overlap_factor < 1.0,
              "AutoencoderKL::decode_tiled: tile size ", tile, " and overlap ",
              tiling.overlap_factor, " are out of range");
  if (z.size(2) <= latent_tile && z.size(3) <= latent_tile) return decode(z);
  const auto stride =
      static_cast<int64_t>(static_cast<double>(latent_tile) * (1 - tiling.overlap_factor));
  const auto extent = static_cast<int64_t>(static_cast<double>(tile) * tiling.overlap_factor);
  return tiled(z, latent_tile, stride, extent, tile - extent,
               [&](const at::Tensor& t) { return decode(t); });
}

at::Tensor AutoencoderKLImpl::scale_latents(const at::Tensor& z) const {
  if (config_.latents_mean.has_value()) {
    const auto per_channel = [&](const std::vector<double>& v) {
      return at::tensor(v, z.options().dtype(at::kDouble)).to(z.dtype()).view({1, -1, 1, 1});
    };
    return (z - per_channel(*config_.latents_mean)) * config_.scaling_factor /
           per_channel(*config_.latents_std);
  }
  return (z - config_.shift_factor.value_or(0.0)) * config_.scaling_factor;
}

at::Tensor AutoencoderKLImpl::unscale_latents(const at::Tensor& l) const {
  if (config_.latents_mean.has_value()) {
    const auto per_channel = [&](const std::vector<double>& v) {
      return at::tensor(v, l.options().dtype(at::kDouble)).to(l.dtype()).view({1, -1, 1, 1});
    };
    return l * per_channel(*config_.latents_std) / config_.scaling_factor +
           per_channel(*config_.latents_mean);
  }
  return l / config_.scaling_factor + config_.shift_factor.value_or(0.0);
}

at::Tensor AutoencoderKLImpl::encode_latents(const at::Tensor& x,
                                             std::optional<at::Generator> generator, bool sample) {
  const LatentDistribution d = encode(x);
  return scale_latents(sample ? d.sample(std::move(generator)) : d.mode());
}

at::Tensor AutoencoderKLImpl::decode_latents(const at::Tensor& latents) {
  return decode(unscale_latents(latents));
}

// ---- loading --------------------------------------------------------------------------------

namespace {
io::TensorMap read_autoencoder_weights(const std::filesystem::path& path) {
  const std::string ext = lowercase_extension(path);
  io::TensorMap tensors;
  if (ext == ".safetensors") {
    tensors = io::load_safetensors(path);
  } else if (ext == ".bin" || ext == ".pt" || ext == ".pth") {
    tensors = io::load_torch_state_dict(path);
  } else {
    throw std::runtime_error(c10::str(path.string(), ": unknown weight format '", ext,
                                      "' (expected .safetensors, .bin, .pt or .pth)"));
  }
  upgrade_legacy_attention_keys(tensors);
  return tensors;
}

void load_into(AutoencoderKL& vae, const io::TensorMap& tensors, const std::filesystem::path& path) {
  try {
    io::load_state_dict(*vae, tensors);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(c10::str(path.string(), ": AutoencoderKL ", e.what()));
  }
}

}  // namespace

void check_autoencoder_config(const AutoencoderKLConfig& c, const io::TensorMap& tensors,
                              const std::filesystem::path& config_path) {
  const io::ConfigCheck check(tensors, config_path.string(), "");
  const auto levels = static_cast<int64_t>(c.block_out_channels.size());
  check.expect_layers("the length of block_out_channels", levels, "encoder.down_blocks.");
  check.expect_layers("layers_per_block", c.layers_per_block, "encoder.down_blocks.0.resnets.");
  for (int64_t i = 0; i < levels; ++i) {
    const std::string key = c10::str("encoder.down_blocks.", i, ".resnets.0.conv2.weight");
    check.expect(c10::str("block_out_channels[", i, "]"), c.block_out_channels[i],
                 check.size(key, 4, 0), key);
  }
  // Channel counts of the image and the latent: checked when the weights hold them (strict
  // loading names a missing tensor afterwards).
  if (const int64_t in = check.size("encoder.conv_in.weight", 4, 1); in != 0) {
    check.expect("in_channels", c.in_channels, in, "encoder.conv_in.weight");
  }
  if (const int64_t latent = check.size("decoder.conv_in.weight", 4, 1); latent != 0) {
    check.expect("latent_channels", c.latent_channels, latent, "decoder.conv_in.weight");
  }
}

void load_autoencoder_weights(AutoencoderKL& vae, const std::filesystem::path& path) {
  load_into(vae, read_autoencoder_weights(path), path);
}

AutoencoderKL load_pretrained_autoencoder(const std::filesystem::path& folder) {
  const auto config = AutoencoderKLConfig::from_json_file(folder / "config.json");
  std::filesystem::path weights = folder / "diffusion_pytorch_model.safetensors";
  if (!std::filesystem::exists(weights)) weights = folder / "diffusion_pytorch_model.bin";
  if (!std::filesystem::exists(weights)) {
    throw std::runtime_error(
        c10::str(folder.string(), ": no diffusion_pytorch_model.safetensors or .bin"));
  }
  const io::TensorMap tensors = read_autoencoder_weights(weights);
  // Before the model is built: a config asking for 65,536 layers per block beside small weights
  // would otherwise take minutes to build before the first shape is compared.
  check_autoencoder_config(config, tensors, folder / "config.json");
  AutoencoderKL vae(config);
  load_into(vae, tensors, weights);
  vae->eval();
  return vae;
}

}  // namespace microdit::encoders
