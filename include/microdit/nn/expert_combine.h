// The last step of the expert-choice MoE (nn/expert_choice_moe) as one operation: each expert's
// output row weighted by its routing probability and added into the row of the token it chose.
// The plain path runs it as a probability multiply, a zero fill and a scatter_add (gather mode:
// after a transposing copy to batch-major), and backward as a gather, two multiplies and a sum;
// the fused path reads the expert outputs once and writes every token row once, and in backward
// reads each choice's gradient and output row once, writing the output row's gradient and the
// probability's (CUDA kernels: expert_combine_kernels.cu; ATen ops elsewhere).
// Legend: B samples, T tokens per sample, D width, E experts, K tokens per expert.
#pragma once
#include <ATen/ATen.h>

namespace microdit::nn {

// h: expert outputs (E,B*K,D), expert-major, the row of choice (b,e,k) at e*B*K + b*K + k;
// probs (B,E,K), any floating dtype; indices (B,E,K) int64 in [0,T), distinct per (b,e).
// Returns (B,T,D) in h's dtype: out[b,t] = sum over the choices (e,k) of token t of
// round(round(probs[b,e,k]) * h[row]), each probability and product rounded to h's dtype as the
// plain ops round them, the sum in float32 (float64 for float64 h) in expert order (the kernels
// and the CPU; the composite path on CUDA adds by atomics, in no fixed order), rounded once;
// zero for a token no expert chose. Differentiable in h and probs. h, probs and indices on one
// device.
at::Tensor expert_combine(const at::Tensor& h, const at::Tensor& probs, const at::Tensor& indices,
                          int64_t tokens);

// expert_combine's values without autograd (the CUDA kernels where built, else the composite
// path below); what nn/expert_dispatch's backward computes with all probabilities 1.
at::Tensor expert_combine_values(const at::Tensor& h, const at::Tensor& probs,
                                 const at::Tensor& indices, int64_t tokens);

// For each (b,t,e): the k with indices[b,e,k] == t, or -1; (B,T,E) int32. What the forward
// kernel reads to find a token's choices without atomics.
at::Tensor expert_choice_slots(const at::Tensor& indices, int64_t tokens);

// The operation's forward and backward in ATen ops (any device), as the kernels compute them;
// the CUDA kernels are tested against them. probs: float32; grad (B,T,D) in h's dtype.
at::Tensor expert_combine_forward_composite(const at::Tensor& h, const at::Tensor& probs,
                                            const at::Tensor& indices, int64_t tokens);
struct ExpertCombineGrads {
  at::Tensor h;  // (E,B*K,D) in h's dtype: round(grad[b,t] * round(p))
  // (B,E,K) float32 (float64 for float64 h): the row sum of round(grad[b,t] * h[row]), rounded
  // to h's dtype.
  at::Tensor probs;
};
ExpertCombineGrads expert_combine_backward_composite(const at::Tensor& grad, const at::Tensor& h,
                                                     const at::Tensor& probs,
                                                     const at::Tensor& indices);

}  // namespace microdit::nn
