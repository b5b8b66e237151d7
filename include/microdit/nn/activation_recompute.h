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

#include "microdit/util/thread_flag.h"

namespace microdit::nn {

// While one lives on this thread, the FFNs take these paths. Off by default:
// `microdit-bench --recompute-act` measures it.
using RecomputeActivationsGuard = util::ThreadFlagGuard<struct RecomputeActivationsTag>;

// silu(a) * b, keeping a and b for backward (SwiGLU: a = w1(x), b = w2(x)).
at::Tensor silu_mul(const at::Tensor& a, const at::Tensor& b);

// silu_mul's arithmetic without an autograd node, for callers that keep their own
// (nn/swiglu_projection, whose a and b are the halves of one product): the values, and the
// gradients of a and b for the output's gradient g (silu(a) recomputed) written into da and db
// (a's shape and dtype; on CUDA laid out as a and b are, e.g. the halves of h's gradient).
at::Tensor silu_mul_values(const at::Tensor& a, const at::Tensor& b);
void silu_mul_gradients_into(const at::Tensor& g, const at::Tensor& a, const at::Tensor& b,
                             const at::Tensor& da, const at::Tensor& db);

// bmm(gelu(u), w) with exact-erf GELU, keeping u and w (cast to u's dtype, as autocast casts the
// expert weights) for backward. u: (E,M,F), w: (E,F,D) -> (E,M,D). Under Fp32WeightGradGuard
// (nn/weight_grad.h) w's gradient comes from the product in float32.
at::Tensor gelu_bmm(const at::Tensor& u, const at::Tensor& w);

}  // namespace microdit::nn
