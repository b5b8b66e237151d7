// Deferred masking (paper Sec. 3.1): which tokens the backbone sees. Sampling a mask is separate
// from the forward pass, so a trainer can draw it from its own per-sample random streams and a
// test can pass the official implementation's indices.
// Legend: B batch, T tokens, Tk kept tokens = int(T * (1 - mask_ratio)), D width.
#pragma once
#include <ATen/ATen.h>

#include <optional>

namespace microdit::model {

struct TokenMask {
  at::Tensor ids_keep;     // (B,Tk) int64: kept token indices, in shuffled order
  at::Tensor ids_restore;  // (B,T) int64: position of each token in [kept..., removed...]
  at::Tensor mask;         // (B,T) float: 1 = removed, 0 = kept
};

int64_t kept_tokens(int64_t num_tokens, double mask_ratio);

// The official get_mask given its uniform noise (B,T): argsort, small noise is kept.
TokenMask mask_from_noise(const at::Tensor& noise, double mask_ratio);

// Draws the noise with `generator` (or the default one) on `device`, then mask_from_noise.
TokenMask sample_mask(int64_t batch, int64_t num_tokens, double mask_ratio,
                      std::optional<at::Generator> generator = std::nullopt,
                      at::Device device = at::kCPU);

// (B,T,D) -> (B,Tk,D): the kept tokens.
at::Tensor keep_tokens(const at::Tensor& x, const TokenMask& mask);

// (B,Tk,D) -> (B,T,D): kept outputs back in place, `mask_token` (1,1,D) everywhere else.
at::Tensor restore_tokens(const at::Tensor& x, const TokenMask& mask, const at::Tensor& mask_token);

}  // namespace microdit::model
