// MicroDiT: the official `DiT` (SonyResearch/micro_diffusion models/dit.py) as a LibTorch module.
// Embed patches, noise level and caption; run the patch-mixer on all tokens; keep a subset
// (deferred masking); run the layer-wise scaled backbone with expert-choice MoE FFNs, or in
// training route some tokens around a range of its blocks (token_route.h); final layer; put
// removed tokens back as `mask_token`; unpatchify.
// Legend: B batch, C channels, H W latent size, p patch, T tokens, Tk kept tokens, D width,
// L caption tokens, Cy caption channels.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <optional>

#include "microdit/model/config.h"
#include "microdit/model/masking.h"
#include "microdit/model/patch_mixer.h"
#include "microdit/model/token_route.h"
#include "microdit/nn/dit_block.h"
#include "microdit/nn/embedders.h"

namespace microdit::model {

class DiTImpl : public torch::nn::Module {
 public:
  explicit DiTImpl(const DiTConfig& config);

  // x (B,C,H,W), t (B) or (1) c_noise, y (B,1,L,Cy) or (B,L,Cy); mask null = all tokens;
  // route (training only, not with a mask): blocks start..end on the routed tokens.
  // Returns (B,C,H,W); masked positions hold mask_token.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                     const TokenMask* mask = nullptr, const TokenRoute* route = nullptr);
  // Classifier-free guidance: uncond + cfg * (cond - uncond), uncond = all-zero caption.
  at::Tensor forward_with_cfg(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                              double cfg);
  // Guided when cfg != 1 (the official forward's routing).
  at::Tensor forward_guided(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                            double cfg);

  at::Tensor unpatchify(const at::Tensor& x) const;  // (B,T,p*p*C) -> (B,C,H,W)
  // The official initialize_weights (see docs/architecture.md for the rules).
  void initialize_weights();
  int64_t num_parameters() const;

  DiTConfig config;
  nn::PatchEmbed x_embedder{nullptr};
  nn::TimestepEmbedder t_embedder{nullptr};
  nn::CaptionProjection y_embedder{nullptr};
  nn::AttentionBlockPromptEmbedding y_emb_preprocess{nullptr};
  nn::Mlp pooled_y_emb_process{nullptr};
  PatchMixer patch_mixer;  // no modules when config.use_patch_mixer is false
  torch::nn::ModuleList blocks{nullptr};
  nn::T2IFinalLayer final_layer{nullptr};
  at::Tensor pos_embed;   // buffer (1,T,D)
  at::Tensor mask_token;  // buffer (1,1,p*p*C), zeros

  // Caption tokens through projection and caption block, and the conditioning vector
  // c = t_emb + pooled caption, as forward computes them. Returns {y (B,L,D), c (B,D)}.
  std::pair<at::Tensor, at::Tensor> condition(const at::Tensor& t, const at::Tensor& y,
                                              int64_t batch);
};
TORCH_MODULE(DiT);

}  // namespace microdit::model
