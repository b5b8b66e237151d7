// The FFN activations recomputed in backward instead of kept: silu(a) in the SwiGLU FFN and
// gelu(u) in the expert-choice MoE experts. Autograd keeps both the activation's input (for its
// own backward) and its output (for the next product's backward); these keep only the input and
// apply the activation again in backward. Same kernels on the same values, so the results are
// bitwise those of the plain ops; the cost is one elementwise pass per FFN in backward, the gain
// one (tokens x hidden width) tensor per FFN of memory. On CUDA, where the build has the fused
// kernels (silu_mul_kernels.cu, gelu_kernels.cu), silu_mul is one kernel each way and gelu_bmm's
// backward recomputes gelu(u) and takes its gradient in one kernel: the same formulas and
// rounding points, so within a rounding of the plain ops, and fewer passes than the plain ops.
// Legend: E experts, M rows per expert, F hidden width, D width.
#pragma once
#include <ATen/ATen.h>

namespace microdit::nn {

// silu(a) * b, keeping a and b for backward (SwiGLU: a = w1(x), b = w2(x)).
at::Tensor silu_mul(const at::Tensor& a, const at::Tensor& b);

// bmm(gelu(u), w) with exact-erf GELU, keeping u and w (cast to u's dtype, as autocast casts the
// expert weights) for backward. u: (E,M,F), w: (E,F,D) -> (E,M,D). With fp32_weight_grad, where
// nn/weight_grad's takes_fp32_weight_grad holds, w's gradient comes from the product in float32.
at::Tensor gelu_bmm(const at::Tensor& u, const at::Tensor& w, bool fp32_weight_grad);

}  // namespace microdit::nn
