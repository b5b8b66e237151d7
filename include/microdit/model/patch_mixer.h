// The patch-mixer (paper Sec. 3.1): a few DiT blocks over ALL tokens before masking, so the kept
// tokens carry information about the removed ones. When its width differs from the backbone's,
// LayerNorm+Linear maps take x and the caption tokens into it and x back out; the out-map runs
// after masking, on kept tokens only. Its modules are registered on the owning DiT under the
// official names `patch_mixer.<i>`, `patch_mixer_map_xin`, `patch_mixer_map_y`,
// `patch_mixer_map_xout`.
// Legend: B batch, T tokens, Tk kept tokens, D backbone width, Dm mixer width, L caption tokens.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>

#include "microdit/model/config.h"

namespace microdit::model {

class PatchMixer {
 public:
  PatchMixer() = default;
  PatchMixer(const DiTConfig& config, torch::nn::Module& owner);

  // x (B,T,D), y (B,L,D), c (B,D) -> (B,T,Dm)
  at::Tensor mix(at::Tensor x, const at::Tensor& y, const at::Tensor& c);
  // (B,Tk,Dm) -> (B,Tk,D)
  at::Tensor map_out(const at::Tensor& x);
  void custom_init();

  torch::nn::ModuleList blocks{nullptr};  // DiTBlock x patch_mixer_depth
  // Empty (identity) when Dm == D, as the official nn.Identity maps.
  torch::nn::Sequential map_xin{nullptr}, map_y{nullptr}, map_xout{nullptr};
};

}  // namespace microdit::model
