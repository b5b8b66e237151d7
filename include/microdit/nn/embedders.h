// Input embedders of the DiT: latent patches, noise level, caption tokens.
// Legend: B batch, C latent channels, H W latent size, p patch, T = (H/p)*(W/p) tokens, D width,
// L caption tokens, Cy caption channels.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "microdit/nn/feed_forward.h"

namespace microdit::nn {

// timm PatchEmbed: conv with kernel = stride = p, then flatten to tokens.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t in_channels, int64_t dim, int64_t patch_size);
  at::Tensor forward(const at::Tensor& x);  // (B,C,H,W) -> (B,T,D)

  int64_t patch_size;
  torch::nn::Conv2d proj{nullptr};  // (D, C, p, p) with bias
};
TORCH_MODULE(PatchEmbed);

// Sinusoidal embedding of the EDM c_noise (512 wide: cos half then sin half), then an MLP.
class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  explicit TimestepEmbedderImpl(int64_t dim, int64_t frequency_embedding_size = 512);
  at::Tensor forward(const at::Tensor& t);  // (B) -> (B,D)
  static at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim,
                                       double max_period = 10000.0);

  int64_t frequency_embedding_size;
  torch::nn::Sequential mlp{nullptr};  // Linear(512, D), GELU(tanh), Linear(D, D)
};
TORCH_MODULE(TimestepEmbedder);

// Caption tokens to model width: Mlp(Cy -> D -> D) with a LayerNorm after the activation.
class CaptionProjectionImpl : public torch::nn::Module {
 public:
  CaptionProjectionImpl(int64_t caption_channels, int64_t dim, double norm_eps);
  at::Tensor forward(const at::Tensor& y) { return y_proj(y); }  // (B,L,Cy) -> (B,L,D)

  Mlp y_proj{nullptr};
};
TORCH_MODULE(CaptionProjection);

}  // namespace microdit::nn
