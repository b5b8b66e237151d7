// LayerNorm and adaLN modulation as one operation: y = LN(x) * w * (1 + scale) + shift.
// The plain path runs it as a LayerNorm kernel, a cast and two broadcasting elementwise kernels
// each way, plus a copy when x is a strided slice (the QK-norm of a qkv projection); the fused
// path reads x once and writes y once, on CUDA with the kernels of fused_norm_kernels.cu.
// Legend: B samples, N rows (tokens) per sample, D normalized width.
#pragma once
#include <ATen/ATen.h>

namespace microdit::nn {

// y = (LN(x) * weight) * (1 + scale) + shift over the last dim of x, in `out_dtype`.
// x: (..., D), rows may be strided (a slice of a wider projection); weight: (D) or undefined;
// shift and scale: (B,D) with x (B,N,D), or both undefined. As Composer's LPLayerNorm, x and
// weight are first rounded to out_dtype; statistics and the modulation are computed in float32
// and rounded once. Differentiable in x, weight, shift and scale.
at::Tensor fused_norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                      const at::Tensor& shift, const at::Tensor& scale, at::ScalarType out_dtype);

// fused_norm where x is also the residual stream's next term (x + f(LN(x)), as in every DiT
// block): `residual` holds x's values, and backward adds the gradient reaching it to the norm's own
// gradient of x in the same pass, instead of autograd adding two activation-sized tensors after.
struct ResidualAndNormed {
  at::Tensor residual;  // x, to add the branch to
  at::Tensor normed;    // fused_norm(x, ...)
};
ResidualAndNormed fused_norm_with_residual(const at::Tensor& x, const at::Tensor& weight,
                                           double eps, const at::Tensor& shift,
                                           const at::Tensor& scale, at::ScalarType out_dtype);

// The `chunks` equal slices of a projection's last dim (the qkv of self-attention, the kv of
// cross-attention), the first `normed` (>= 1) of them through a non-affine LayerNorm (the QK-norm)
// in the projection's dtype, the rest as they are (views). The same values as chunk() followed by
// fused_norm; backward writes every chunk's gradient into one tensor of the projection's shape
// (the norm's backward in place, the others copied), where autograd would concatenate them.
std::vector<at::Tensor> fused_norm_split(const at::Tensor& proj, int64_t chunks, int64_t normed,
                                         double eps);

// The same operation in ATen ops (any device), forward and backward as the kernels compute them;
// the CUDA kernels are tested against it.
struct FusedNormForward {
  at::Tensor y;     // (R,D) out dtype
  at::Tensor mean;  // (R) float32
  at::Tensor rstd;  // (R) float32
  // (R,D) x rounded to the out dtype when x's dtype is wider (float32 rows, bfloat16 output):
  // backward needs only these values, so it keeps them instead of x at half the memory.
  // Undefined otherwise (backward keeps x).
  at::Tensor rounded;
};
struct FusedNormGrads {
  at::Tensor x;       // (R,D) in grad_x_dtype
  at::Tensor weight;  // (D) float32, or undefined
  at::Tensor shift;   // (B,D) float32, or undefined
  at::Tensor scale;   // (B,D) float32, or undefined
};
// True when x of this dtype is rounded to out_dtype into a copy (FusedNormForward::rounded).
bool fused_norm_keeps_rounded(at::ScalarType x_dtype, at::ScalarType out_dtype);
// rows: (R,D) with R = B*N; w: float32 (D) or undefined; shift, scale1p: float32 (B,D) or both
// undefined (scale1p is 1 + scale). Backward's `rows` is forward's `rounded` where defined, else
// forward's rows; grad_y is in the out dtype. residual_grad (R,D) or undefined: the gradient of
// fused_norm_with_residual's `residual`, added to the x gradient before its one rounding.
FusedNormForward fused_norm_forward_composite(const at::Tensor& rows, const at::Tensor& w,
                                              const at::Tensor& shift, const at::Tensor& scale1p,
                                              double eps, at::ScalarType out_dtype);
FusedNormGrads fused_norm_backward_composite(const at::Tensor& grad_y, const at::Tensor& rows,
                                             const at::Tensor& w, const at::Tensor& scale1p,
                                             const at::Tensor& mean, const at::Tensor& rstd,
                                             bool has_modulation, at::ScalarType grad_x_dtype,
                                             const at::Tensor& residual_grad = {});

}  // namespace microdit::nn
