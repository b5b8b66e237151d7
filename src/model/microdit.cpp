#include "microdit/model/microdit.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

#include "microdit/model/block_plan.h"
#include "microdit/model/pos_embed.h"
#include "microdit/nn/init.h"

namespace microdit::model {
namespace {
at::Tensor& modulation_weight(torch::nn::Sequential& adaLN) {
  return adaLN[1]->as<torch::nn::Linear>()->weight;
}
}  // namespace

DiTImpl::DiTImpl(const DiTConfig& c) : config(c) {
  config.validate();
  const auto D = c.dim;
  x_embedder = register_module("x_embedder", nn::PatchEmbed(c.in_channels, D, c.patch_size));
  t_embedder = register_module("t_embedder", nn::TimestepEmbedder(D));
  pos_embed = register_buffer("pos_embed", at::zeros({1, c.num_patches(), D}));
  y_embedder =
      register_module("y_embedder", nn::CaptionProjection(c.caption_channels, D, c.norm_eps));
  y_emb_preprocess = register_module(
      "y_emb_preprocess",
      nn::AttentionBlockPromptEmbedding(D, c.head_dim, 4.0, c.multiple_of, c.norm_eps, c.use_bias));
  pooled_y_emb_process = register_module("pooled_y_emb_process", nn::Mlp(D, D, D, c.norm_eps));
  if (c.use_patch_mixer) patch_mixer = PatchMixer(c, *this);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (const auto& options : backbone_blocks(c)) blocks->push_back(nn::DiTBlock(options));
  mask_token =
      register_buffer("mask_token", at::zeros({1, 1, c.patch_size * c.patch_size * c.in_channels}));
  final_layer =
      register_module("final_layer", nn::T2IFinalLayer(D, c.patch_size, c.in_channels, c.norm_eps));
  initialize_weights();
}

std::pair<at::Tensor, at::Tensor> DiTImpl::condition(const at::Tensor& t, const at::Tensor& y,
                                                     int64_t batch) {
  auto t_emb = t_embedder(t.expand({batch}));                    // (B,D)
  auto y_tokens = y.dim() == 4 ? y.squeeze(1) : y;               // (B,L,Cy)
  auto y_emb = y_emb_preprocess(y_embedder(y_tokens));           // (B,L,D)
  auto c = t_emb + pooled_y_emb_process(y_emb.mean(/*dim=*/1));  // (B,D)
  return {y_emb, c};
}

at::Tensor DiTImpl::forward(const at::Tensor& x_in, const at::Tensor& t, const at::Tensor& y,
                            const TokenMask* mask, const TokenRoute* route) {
  TORCH_CHECK(!(mask && route), "a forward pass masks tokens or routes them, not both");
  TORCH_CHECK(!route || route->end_block < static_cast<int64_t>(blocks->size()),
              "the route ends at block ", route ? route->end_block : 0, " of ", blocks->size());
  if (route && route->end_block < route->start_block) route = nullptr;  // no block: no effect
  auto x = x_embedder(x_in) + pos_embed;  // (B,T,D)
  auto [y_emb, c] = condition(t, y, x.size(0));
  if (config.use_patch_mixer) x = patch_mixer.mix(x, y_emb, c);
  if (mask) x = keep_tokens(x, *mask);  // (B,Tk,D or Dm)
  if (config.use_patch_mixer) x = patch_mixer.map_out(x);
  at::Tensor before_route;  // (B,T,D): the stream the routed tokens re-enter from
  for (size_t i = 0; i < blocks->size(); ++i) {
    const auto index = static_cast<int64_t>(i);
    if (route && index == route->start_block) {
      before_route = x;
      x = start_route(x, *route);  // (B,Tr,D)
    }
    x = blocks[i]->as<nn::DiTBlock>()->forward(x, y_emb, c);
    if (route && index == route->end_block) x = end_route(x, before_route, *route);
  }
  x = final_layer(x, c);  // (B,Tk,p*p*C)
  if (mask) x = restore_tokens(x, *mask, mask_token);
  return unpatchify(x);
}

at::Tensor DiTImpl::forward_with_cfg(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                                     double cfg) {
  auto x2 = at::cat({x, x}, 0);
  auto y2 = at::cat({y, at::zeros_like(y)}, 0);
  auto t2 = t.numel() == 1 ? t : at::cat({t, t}, 0);
  auto out = forward(x2, t2, y2).chunk(2, 0);
  return out[1] + cfg * (out[0] - out[1]);
}

at::Tensor DiTImpl::forward_guided(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                                   double cfg) {
  return cfg != 1.0 ? forward_with_cfg(x, t, y, cfg) : forward(x, t, y);
}

at::Tensor DiTImpl::unpatchify(const at::Tensor& x) const {
  const auto p = config.patch_size, C = config.in_channels;
  const auto h = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(x.size(1)))));
  TORCH_CHECK(h * h == x.size(1), "unpatchify needs a square token grid, got ", x.size(1));
  auto out = x.reshape({x.size(0), h, h, p, p, C}).permute({0, 5, 1, 3, 2, 4});  // n c h p w q
  return out.reshape({x.size(0), C, h * p, h * p});
}

void DiTImpl::initialize_weights() {
  at::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      nn::xavier_uniform_2d_(linear->weight);
      if (linear->bias.defined()) linear->bias.zero_();
    }
  }
  pos_embed.copy_(sincos_pos_embed_2d(config.dim, config.grid_size(), config.pos_interp_scale,
                                      config.grid_size()));
  nn::xavier_uniform_2d_(x_embedder->proj->weight);
  nn::normal_(t_embedder->mlp[0]->as<torch::nn::Linear>()->weight, 0.02);
  nn::normal_(t_embedder->mlp[2]->as<torch::nn::Linear>()->weight, 0.02);
  nn::normal_(pooled_y_emb_process->fc1->weight, 0.02);
  nn::normal_(pooled_y_emb_process->fc2->weight, 0.02);
  nn::normal_(y_embedder->y_proj->fc1->weight, 0.02);
  nn::normal_(y_embedder->y_proj->fc2->weight, 0.02);
  for (const auto& block : *blocks) block->as<nn::DiTBlock>()->custom_init();
  if (config.use_patch_mixer) patch_mixer.custom_init();
  for (const auto& block : *blocks)
    nn::zeros_(modulation_weight(block->as<nn::DiTBlock>()->adaLN_modulation));
  if (config.use_patch_mixer) {
    for (const auto& block : *patch_mixer.blocks)
      nn::zeros_(modulation_weight(block->as<nn::DiTBlock>()->adaLN_modulation));
  }
  y_emb_preprocess->custom_init();
  nn::zeros_(y_emb_preprocess->attn->proj->weight);
  nn::zeros_(y_emb_preprocess->mlp->w3->weight);
  nn::zeros_(modulation_weight(final_layer->adaLN_modulation));
  nn::zeros_(final_layer->linear->weight);
}

int64_t DiTImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace microdit::model
