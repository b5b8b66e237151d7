#include "microdit/nn/embedders.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

namespace microdit::nn {

PatchEmbedImpl::PatchEmbedImpl(int64_t in_channels, int64_t dim, int64_t patch_size_)
    : patch_size(patch_size_) {
  proj = register_module(
      "proj",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, dim, patch_size).stride(patch_size)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& x) {
  return proj(x).flatten(2).transpose(1, 2);  // (B,D,H/p,W/p) -> (B,T,D)
}

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t dim, int64_t freq_size)
    : frequency_embedding_size(freq_size) {
  mlp = register_module(
      "mlp", torch::nn::Sequential(nn::Linear(freq_size, dim),
                                   torch::nn::GELU(torch::nn::GELUOptions().approximate("tanh")),
                                   nn::Linear(dim, dim)));
}

at::Tensor TimestepEmbedderImpl::timestep_embedding(const at::Tensor& t, int64_t dim,
                                                    double max_period) {
  const int64_t half = dim / 2;
  // Same float32 operation order as the official code, so the frequencies agree bit for bit.
  auto freqs =
      at::exp(-std::log(max_period) * at::arange(0, half, t.options().dtype(at::kFloat)) / half);
  auto args = t.unsqueeze(1).to(at::kFloat) * freqs.unsqueeze(0);
  auto embedding = at::cat({at::cos(args), at::sin(args)}, -1);
  if (dim % 2) embedding = at::cat({embedding, at::zeros_like(embedding.narrow(1, 0, 1))}, -1);
  return embedding;
}

at::Tensor TimestepEmbedderImpl::forward(const at::Tensor& t) {
  auto first = mlp[0]->as<torch::nn::Linear>();
  return mlp->forward(
      timestep_embedding(t, frequency_embedding_size).to(first->weight.scalar_type()));
}

CaptionProjectionImpl::CaptionProjectionImpl(int64_t caption_channels, int64_t dim,
                                             double norm_eps) {
  y_proj = register_module("y_proj", Mlp(caption_channels, dim, dim, norm_eps));
}

}  // namespace microdit::nn
