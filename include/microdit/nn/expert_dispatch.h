// The first step of the expert-choice MoE (nn/expert_choice_moe) as one operation: each expert's
// batch of the token rows it chose, expert-major. Forward is one index_select of rows; backward,
// where the plain path scatters each choice's gradient row into its token's row with atomics
// (scatter_add, bf16 atomics under autocast), reads each token's choices from
// the slot table and writes every token row once: the combine's forward kernel with unit
// probabilities (expert_combine_kernels.cu; ATen ops elsewhere).
// Legend: B samples, T tokens per sample, D width, E experts, K tokens per expert.
#pragma once
#include <ATen/ATen.h>

namespace microdit::nn {

// x (B,T,D); indices (B,E,K) int64 in [0,T), distinct per (b,e). Returns (E,B*K,D): row
// e*B*K + b*K + k is x[b, indices[b,e,k]]. Differentiable in x: the gradient of token t sums the
// gradient rows of its choices in float32 (float64 for float64 x), in expert order, rounded once
// to x's dtype; zero for a token no expert chose.
at::Tensor expert_dispatch(const at::Tensor& x, const at::Tensor& indices);

// The row of each choice in x viewed as (B*T,D), expert-major (E*B*K): (E*B*K) int64.
at::Tensor expert_choice_rows(const at::Tensor& indices, int64_t tokens);

}  // namespace microdit::nn
