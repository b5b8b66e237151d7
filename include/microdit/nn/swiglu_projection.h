// The SwiGLU FFN's two input projections as one matrix product: silu(x W1^T) * (x W2^T) from
// h = x [W1; W2]^T, whose halves are the two projections. Plain, each projection is its own
// product in both directions and autograd adds the two gradients of x (one more write of x's
// gradient and an add reading two and writing one activation-sized tensor per FFN); merged, x's
// gradient is one product over both halves of h's gradient, written once, and the weights'
// gradients one product whose row blocks are W1's and W2's. The activation is recomputed in
// backward from h (as nn/activation_recompute's silu_mul, whose CUDA kernels read and write the
// halves in place). The same function; x's gradient is summed in one product instead of two
// rounded ones. Weights stay the separate w1 and w2 parameters (the official state-dict keys).
// Legend: D width, F hidden width.
#pragma once
#include <ATen/ATen.h>

#include "microdit/util/thread_flag.h"

namespace microdit::nn {

// While one lives on this thread, FeedForward (without biases) takes swiglu_projection. Off by
// default: `microdit-bench --merged-swiglu` measures it.
using MergedSwiGLUGuard = util::ThreadFlagGuard<struct MergedSwiGLUTag>;

// silu(linear(x, w1)) * linear(x, w2) for x (..., D) and w1, w2 (F, D), as autocast computes it
// (the operands cast to the autocast dtype where it is on; float32 weight gradients under
// Fp32WeightGradGuard, as nn/weight_grad). Differentiable in x, w1 and w2.
at::Tensor swiglu_projection(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2);

}  // namespace microdit::nn
