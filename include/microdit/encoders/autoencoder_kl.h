// The KL-regularised image autoencoder of latent diffusion (diffusers `AutoencoderKL`): the SDXL
// VAE (4 latent channels) and ostris/vae-kl-f8-d16 (16 latent channels) that MicroDiT trains in.
// Module and parameter names equal diffusers' state-dict keys, so `diffusion_pytorch_model.*`
// files load unchanged.
// Legend: B batch, C channels, H W image size, h w latent size (H / f, f = 2^(levels-1)),
// Z latent channels, T = h' * w' attention tokens at the lowest resolution.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "microdit/io/json.h"
#include "microdit/io/tensor_map.h"

namespace microdit::encoders {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;                                  // Z
  std::vector<int64_t> block_out_channels{128, 256, 512, 512};  // one per resolution level
  int64_t layers_per_block = 2;  // encoder resnets per level; the decoder has one more
  int64_t norm_num_groups = 32;
  int64_t sample_size = 1024;  // image tile size of tiled encoding/decoding
  // Diffusion latents are (z - shift_factor) * scaling_factor (LDM paper, Sec. 4.3.2).
  double scaling_factor = 0.13025;
  std::optional<double> shift_factor;
  // Per-channel statistics some VAEs ship instead (Playground v2.5): latents are then
  // (z - latents_mean) * scaling_factor / latents_std. Either both or neither.
  std::optional<std::vector<double>> latents_mean, latents_std;
  bool force_upcast = true;  // the VAE overflows in float16: keep it in float32
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  // stabilityai/stable-diffusion-xl-base-1.0 `vae/config.json`.
  static AutoencoderKLConfig sdxl();
  // ostris/vae-kl-f8-d16 (16 latent channels). Its scaling_factor changed between revisions
  // (0.24447 at upload, 0.2614 on main): load the shipped config.json to be sure.
  static AutoencoderKLConfig kl_f8_d16();
  // A diffusers `config.json`; absent keys take diffusers' AutoencoderKL defaults. Rejects block
  // types other than DownEncoderBlock2D/UpDecoderBlock2D and activations other than silu.
  static AutoencoderKLConfig from_json(const io::Json& json);
  static AutoencoderKLConfig from_json_file(const std::filesystem::path& path);

  // Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
  int64_t downsample_factor() const;  // f = 2^(levels-1): 8 for SDXL
};

// ResnetBlock2D: h = conv1(SiLU(norm1(x))), h = conv2(SiLU(norm2(h))), out = shortcut(x) + h.
class VaeResnetBlockImpl : public torch::nn::Module {
 public:
  VaeResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups);
  at::Tensor forward(const at::Tensor& x);  // (B,Cin,H,W) -> (B,Cout,H,W)

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};  // (Cin), (Cout); eps 1e-6
  torch::nn::Conv2d conv1{nullptr};                     // (Cout, Cin, 3, 3)
  torch::nn::Conv2d conv2{nullptr};                     // (Cout, Cout, 3, 3)
  torch::nn::Conv2d conv_shortcut{nullptr};             // (Cout, Cin, 1, 1), only if Cin != Cout
};
TORCH_MODULE(VaeResnetBlock);

// Single-head self-attention over the h' * w' positions, with a residual connection.
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups);
  at::Tensor forward(const at::Tensor& x);  // (B,C,h',w') -> (B,C,h',w')

  torch::nn::GroupNorm group_norm{nullptr};                       // (C); eps 1e-6
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};  // (C, C)
  torch::nn::ModuleList to_out;                                   // [0]: Linear (C, C)
 private:
  torch::nn::Linear out_proj_{nullptr};
};
TORCH_MODULE(VaeAttention);

// UNetMidBlock2D: resnets.0, attentions.0 (optional), resnets.1 at the lowest resolution.
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::ModuleList resnets, attentions;

 private:
  std::vector<VaeResnetBlock> resnet_blocks_;
  VaeAttention attention_{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// Downsample2D: pad one zero column right and one zero row below, then a stride-2 3x3 conv.
class VaeDownsampleImpl : public torch::nn::Module {
 public:
  explicit VaeDownsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);  // (B,C,H,W) -> (B,C,H/2,W/2)
  torch::nn::Conv2d conv{nullptr};          // (C, C, 3, 3), no padding
};
TORCH_MODULE(VaeDownsample);

// Upsample2D: nearest-neighbour x2, then a 3x3 conv.
class VaeUpsampleImpl : public torch::nn::Module {
 public:
  explicit VaeUpsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);  // (B,C,H,W) -> (B,C,2H,2W)
  torch::nn::Conv2d conv{nullptr};          // (C, C, 3, 3), padding 1
};
TORCH_MODULE(VaeUpsample);

// DownEncoderBlock2D (`resnets`, `downsamplers`) or UpDecoderBlock2D (`resnets`, `upsamplers`).
class VaeLevelBlockImpl : public torch::nn::Module {
 public:
  enum class Kind { down, up };
  VaeLevelBlockImpl(Kind kind, int64_t in_channels, int64_t out_channels, int64_t num_resnets,
                    int64_t groups, bool resample);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::ModuleList resnets;
  torch::nn::ModuleList samplers;  // registered as downsamplers / upsamplers; empty on the last

 private:
  std::vector<VaeResnetBlock> resnet_blocks_;
  VaeDownsample down_{nullptr};
  VaeUpsample up_{nullptr};
};
TORCH_MODULE(VaeLevelBlock);

// Image (B,3,H,W) -> moments (B,2Z,h,w) before quant_conv.
class VaeEncoderImpl : public torch::nn::Module {
 public:
  explicit VaeEncoderImpl(const AutoencoderKLConfig& config);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv_in{nullptr};  // (C0, 3, 3, 3)
  torch::nn::ModuleList down_blocks;
  VaeMidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};  // (C_last)
  torch::nn::Conv2d conv_out{nullptr};          // (2Z, C_last, 3, 3)

 private:
  std::vector<VaeLevelBlock> levels_;
};
TORCH_MODULE(VaeEncoder);

// Latent (B,Z,h,w) after post_quant_conv -> image (B,3,H,W).
class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const AutoencoderKLConfig& config);
  at::Tensor forward(const at::Tensor& z);

  torch::nn::Conv2d conv_in{nullptr};  // (C_last, Z, 3, 3)
  VaeMidBlock mid_block{nullptr};
  torch::nn::ModuleList up_blocks;              // over reversed(block_out_channels)
  torch::nn::GroupNorm conv_norm_out{nullptr};  // (C0)
  torch::nn::Conv2d conv_out{nullptr};          // (3, C0, 3, 3)

 private:
  std::vector<VaeLevelBlock> levels_;
};
TORCH_MODULE(VaeDecoder);

// The diagonal Gaussian posterior q(z|x) of the encoder (diffusers DiagonalGaussianDistribution).
struct LatentDistribution {
  at::Tensor mean;    // (B,Z,h,w)
  at::Tensor logvar;  // (B,Z,h,w), clamped to [-30, 20]
  at::Tensor std;     // exp(logvar / 2)

  // Splits (B,2Z,h,w) moments into mean and logvar along channels.
  static LatentDistribution from_moments(const at::Tensor& moments);
  // mean + std * eps with eps ~ N(0, I) drawn by `generator` on its own device, so a seeded CPU
  // generator gives the draws torch.randn(shape, generator=g) gives in Python.
  at::Tensor sample(std::optional<at::Generator> generator = std::nullopt) const;
  at::Tensor sample_with_noise(const at::Tensor& eps) const;  // mean + std * eps
  at::Tensor mode() const { return mean; }
};

// Tiled encoding/decoding as diffusers' `enable_tiling()`: overlapping tiles processed one at a
// time and blended linearly over the overlap, so memory stays bounded at any image size.
struct VaeTiling {
  int64_t tile_sample_size = 0;  // image-space tile edge; 0 takes config.sample_size
  double overlap_factor = 0.25;
};

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(AutoencoderKLConfig config);

  // x: (B,3,H,W) in [-1, 1], H and W multiples of f. Runs in the parameters' dtype.
  LatentDistribution encode(const at::Tensor& x);
  // z: (B,Z,h,w) unscaled latents -> (B,3,h*f,w*f), roughly in [-1, 1].
  at::Tensor decode(const at::Tensor& z);
  // decode() over batch slices of at most `slice_size` samples: same result, less memory.
  at::Tensor decode_sliced(const at::Tensor& z, int64_t slice_size);
  // Tiled variants; inputs that fit in one tile take the plain path.
  LatentDistribution encode_tiled(const at::Tensor& x, const VaeTiling& tiling = {});
  at::Tensor decode_tiled(const at::Tensor& z, const VaeTiling& tiling = {});

  // Diffusion-space latents (B,Z,h,w): (z - shift) * scaling with z a posterior sample (drawn by
  // `generator`) or, when !sample, its mean. With latents_mean/std: (z - mean) * scaling / std.
  at::Tensor encode_latents(const at::Tensor& x,
                            std::optional<at::Generator> generator = std::nullopt,
                            bool sample = true);
  // Undoes the scaling, then decodes: decode(latents / scaling + shift).
  at::Tensor decode_latents(const at::Tensor& latents);
  at::Tensor scale_latents(const at::Tensor& z) const;    // z -> diffusion latents
  at::Tensor unscale_latents(const at::Tensor& l) const;  // diffusion latents -> z

  const AutoencoderKLConfig& config() const { return config_; }

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr};       // (2Z, 2Z, 1, 1), if use_quant_conv
  torch::nn::Conv2d post_quant_conv{nullptr};  // (Z, Z, 1, 1), if use_post_quant_conv

 private:
  at::Tensor moments(const at::Tensor& x);  // encoder + quant_conv: (B,2Z,h,w)
  AutoencoderKLConfig config_;
};
TORCH_MODULE(AutoencoderKL);

// Loads a diffusers weight file into `vae`: `.safetensors`, or a torch.save state dict (`.bin`,
// `.pt`, `.pth`). Strict: every missing, unexpected or mis-shaped key is named in one
// std::runtime_error and the model is left untouched. Attention weights of diffusers < 0.14
// (`query`, `key`, `value`, `proj_attn`, possibly as 1x1 convs) are renamed on the way in.
void load_autoencoder_weights(AutoencoderKL& vae, const std::filesystem::path& path);

// Compares the config's structure (levels, resnets per level, channels per level, input and
// latent channels) with the weights' tensor names and shapes; throws one line naming
// `config_path` and the first difference. load_pretrained_autoencoder runs it before building.
void check_autoencoder_config(const AutoencoderKLConfig& config, const io::TensorMap& tensors,
                              const std::filesystem::path& config_path);

// A diffusers model folder: `config.json` plus `diffusion_pytorch_model.safetensors` (or, when
// absent, `diffusion_pytorch_model.bin`). The model is in float32, on CPU, in eval mode.
AutoencoderKL load_pretrained_autoencoder(const std::filesystem::path& folder);

}  // namespace microdit::encoders
