#include "microdit/nn/fused_norm.h"

#include <torch/autograd.h>

#include "fused_norm_kernels.h"

namespace microdit::nn {
namespace {
// float32 arithmetic, or float64 when the output is float64 (the tests' exact comparisons).
at::ScalarType compute_dtype(at::ScalarType out_dtype) {
  return out_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

FusedNormForward norm_forward(const at::Tensor& rows, const at::Tensor& w, const at::Tensor& shift,
                              const at::Tensor& scale1p, double eps, at::ScalarType out_dtype) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (rows.is_cuda() && cuda_kernels::supports(rows.scalar_type()) &&
      cuda_kernels::supports(out_dtype))
    return cuda_kernels::fused_norm_forward(rows, w, shift, scale1p, eps, out_dtype);
#endif
  return fused_norm_forward_composite(rows, w, shift, scale1p, eps, out_dtype);
}

// grad_x_out (R,D) or undefined: where the x gradient goes (the kernels write it there).
FusedNormGrads norm_backward(const at::Tensor& grad_y, const at::Tensor& rows, const at::Tensor& w,
                             const at::Tensor& scale1p, const at::Tensor& mean,
                             const at::Tensor& rstd, bool has_modulation,
                             at::ScalarType grad_x_dtype, const at::Tensor& residual_grad,
                             const at::Tensor& grad_x_out = {}) {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  if (rows.is_cuda() && cuda_kernels::supports(rows.scalar_type()) &&
      cuda_kernels::supports(grad_y.scalar_type()) && cuda_kernels::supports(grad_x_dtype))
    return cuda_kernels::fused_norm_backward(grad_y, rows, w, scale1p, mean, rstd, has_modulation,
                                             grad_x_dtype, residual_grad, grad_x_out);
#endif
  auto grads = fused_norm_backward_composite(grad_y, rows, w, scale1p, mean, rstd, has_modulation,
                                             grad_x_dtype, residual_grad);
  if (grad_x_out.defined()) grads.x = grad_x_out.copy_(grads.x);
  return grads;
}

int64_t dtype_or_none(const at::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.scalar_type()) : -1;
}

at::Tensor cast_or_undefined(const at::Tensor& t, int64_t dtype) {
  return t.defined() ? t.to(static_cast<at::ScalarType>(dtype)) : t;
}

// Outputs y, and with `pass_residual` x itself as a second output: the residual stream's next
// use, whose gradient backward adds to the norm's own gradient of x in the same pass.
class FusedNormFunction : public torch::autograd::Function<FusedNormFunction> {
 public:
  // Optional tensors as std::optional: autograd's input bookkeeping rejects undefined tensors.
  static torch::autograd::tensor_list forward(torch::autograd::AutogradContext* ctx,
                                              const at::Tensor& x,
                                              const std::optional<at::Tensor>& weight_or_none,
                                              const std::optional<at::Tensor>& shift_or_none,
                                              const std::optional<at::Tensor>& scale_or_none,
                                              double eps, at::ScalarType out_dtype,
                                              bool pass_residual) {
    const auto weight = weight_or_none.value_or(at::Tensor());
    const auto shift = shift_or_none.value_or(at::Tensor());
    const auto scale = scale_or_none.value_or(at::Tensor());
    const auto ct = compute_dtype(out_dtype);
    // (R,D): a view when the rows are evenly strided, as the q slice of a qkv projection.
    auto rows = x.flatten(0, -2);
    if (rows.stride(1) != 1) rows = rows.contiguous();
    // LPLayerNorm rounds the weight to the output dtype too.
    auto w = weight.defined() ? weight.to(out_dtype).to(ct) : at::Tensor();
    auto scale1p = scale.defined() ? (1 + scale.to(ct)).contiguous() : at::Tensor();
    auto shift_c = shift.defined() ? shift.to(ct).contiguous() : at::Tensor();
    auto out = norm_forward(rows, w, shift_c, scale1p, eps, out_dtype);
    const auto& kept = out.rounded.defined() ? out.rounded : rows;
    ctx->save_for_backward({kept, w, scale1p, out.mean, out.rstd});
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    // The gradients go back in the dtypes of x, weight, shift and scale.
    ctx->saved_data["dtypes"] = std::vector<int64_t>{dtype_or_none(x), dtype_or_none(weight),
                                                     dtype_or_none(shift), dtype_or_none(scale)};
    auto y = out.y.view(x.sizes());
    // Autograd hands an input returned as an output on as a view whose gradient reaches backward.
    if (pass_residual) return {y, x};
    return {y};
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &rows = saved[0], &w = saved[1], &scale1p = saved[2], &mean = saved[3],
               &rstd = saved[4];
    const auto dtypes = ctx->saved_data["dtypes"].toIntVector();
    const auto D = rows.size(1);
    const auto grad_x_dtype = static_cast<at::ScalarType>(dtypes[0]);
    auto grad_y = grads[0].reshape({-1, D}).contiguous();
    // The passed-on x's gradient; undefined when it reached nothing.
    at::Tensor residual_grad;
    if (grads.size() > 1 && grads[1].defined())
      residual_grad = grads[1].reshape({-1, D}).to(grad_x_dtype).contiguous();
    auto g = norm_backward(grad_y, rows, w, scale1p, mean, rstd, scale1p.defined(), grad_x_dtype,
                           residual_grad);
    return {g.x.view(ctx->saved_data["x_sizes"].toIntVector()),
            cast_or_undefined(g.weight, dtypes[1]),
            cast_or_undefined(g.shift, dtypes[2]),
            cast_or_undefined(g.scale, dtypes[3]),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

// dst.copy_(src), moved as 8-byte words where both have rows that allow it: ATen copies into a
// strided destination one element per access, at a fraction of the memory bandwidth for 2-byte
// types (v's gradient into the projection's gradient below).
void copy_in_words(const at::Tensor& dst, const at::Tensor& src) {
  const int64_t ratio = 8 / dst.element_size();
  auto rows_of_words = [ratio](const at::Tensor& t) {
    if (t.dim() == 0 || t.stride(-1) != 1 || t.size(-1) % ratio != 0 ||
        t.storage_offset() % ratio != 0)
      return false;
    for (int64_t d = 0; d + 1 < t.dim(); ++d)
      if (t.stride(d) % ratio != 0) return false;
    return true;
  };
  if (ratio > 1 && src.scalar_type() == dst.scalar_type() && src.sizes() == dst.sizes() &&
      rows_of_words(dst) && rows_of_words(src))
    dst.view(at::kLong).copy_(src.view(at::kLong));
  else
    dst.copy_(src);
}

// The chunks of a projection, the first `normed` of them through the non-affine fused norm in
// the projection's dtype; backward writes every chunk's gradient into one tensor of the
// projection's shape (the norm's kernels write their rows there, the other chunks are copied).
class NormedSplitFunction : public torch::autograd::Function<NormedSplitFunction> {
 public:
  static torch::autograd::tensor_list forward(torch::autograd::AutogradContext* ctx,
                                              const at::Tensor& proj, int64_t chunks,
                                              int64_t normed, double eps) {
    const int64_t width = proj.size(-1) / chunks;
    torch::autograd::tensor_list outputs, kept;
    for (int64_t i = 0; i < chunks; ++i) {
      auto chunk = proj.narrow(-1, i * width, width);
      if (i >= normed) {
        outputs.push_back(chunk);
        continue;
      }
      auto rows = chunk.flatten(0, -2);  // rows strided by the projection's width
      auto out = norm_forward(rows, {}, {}, {}, eps, proj.scalar_type());
      kept.insert(kept.end(), {rows, out.mean, out.rstd});
      outputs.push_back(out.y.view(chunk.sizes()));
    }
    ctx->save_for_backward(kept);
    ctx->saved_data["sizes"] = proj.sizes().vec();
    ctx->saved_data["chunks"] = chunks;
    ctx->saved_data["normed"] = normed;
    return outputs;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto kept = ctx->get_saved_variables();
    const auto dtype = kept[0].scalar_type();
    auto grad = at::empty(ctx->saved_data["sizes"].toIntVector(), kept[0].options());
    const auto chunks = ctx->saved_data["chunks"].toInt();
    const auto normed = ctx->saved_data["normed"].toInt();
    const int64_t width = grad.size(-1) / chunks;
    for (int64_t i = 0; i < chunks; ++i) {
      auto slice = grad.narrow(-1, i * width, width);
      if (!grads[i].defined()) {
        slice.zero_();
      } else if (i < normed) {
        const auto &rows = kept[3 * i], &mean = kept[3 * i + 1], &rstd = kept[3 * i + 2];
        norm_backward(grads[i].reshape({-1, width}).to(dtype).contiguous(), rows, {}, {}, mean,
                      rstd, false, dtype, {}, slice.flatten(0, -2));
      } else {
        copy_in_words(slice, grads[i]);
      }
    }
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_modulation(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  TORCH_CHECK(shift.defined() == scale.defined(), "fused_norm: shift and scale come together");
  if (!shift.defined()) return;
  TORCH_CHECK(x.dim() == 3 && shift.dim() == 2 && shift.sizes() == scale.sizes() &&
                  shift.size(0) == x.size(0) && shift.size(1) == x.size(2),
              "fused_norm: modulation expects x (B,N,D) and shift, scale (B,D), got x ", x.sizes(),
              ", shift ", shift.sizes(), ", scale ", scale.sizes());
}

torch::autograd::tensor_list apply_fused_norm(const at::Tensor& x, const at::Tensor& weight,
                                              double eps, const at::Tensor& shift,
                                              const at::Tensor& scale, at::ScalarType out_dtype,
                                              bool pass_residual) {
  TORCH_CHECK(x.dim() >= 2, "fused_norm: x needs rows, got ", x.sizes());
  TORCH_CHECK(!weight.defined() || (weight.dim() == 1 && weight.size(0) == x.size(-1)),
              "fused_norm: weight of shape ", weight.sizes(), " for rows of width ", x.size(-1));
  check_modulation(x, shift, scale);
  auto optional = [](const at::Tensor& t) {
    return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
  };
  return FusedNormFunction::apply(x, optional(weight), optional(shift), optional(scale), eps,
                                  out_dtype, pass_residual);
}
}  // namespace

bool fused_norm_keeps_rounded(at::ScalarType x_dtype, at::ScalarType out_dtype) {
  return c10::elementSize(x_dtype) > c10::elementSize(out_dtype);
}

at::Tensor fused_norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                      const at::Tensor& shift, const at::Tensor& scale, at::ScalarType out_dtype) {
  return apply_fused_norm(x, weight, eps, shift, scale, out_dtype, /*pass_residual=*/false)[0];
}

std::vector<at::Tensor> fused_norm_split(const at::Tensor& proj, int64_t chunks, int64_t normed,
                                         double eps) {
  TORCH_CHECK(proj.dim() >= 2 && normed >= 1 && normed <= chunks && proj.size(-1) % chunks == 0 &&
                  proj.stride(-1) == 1,
              "fused_norm_split: ", normed, " of ", chunks,
              " chunks of a projection with unit last stride and a width they divide, got sizes ",
              proj.sizes(), " strides ", proj.strides());
  return NormedSplitFunction::apply(proj, chunks, normed, eps);
}

ResidualAndNormed fused_norm_with_residual(const at::Tensor& x, const at::Tensor& weight,
                                           double eps, const at::Tensor& shift,
                                           const at::Tensor& scale, at::ScalarType out_dtype) {
  auto out = apply_fused_norm(x, weight, eps, shift, scale, out_dtype, /*pass_residual=*/true);
  return {out[1], out[0]};
}

FusedNormForward fused_norm_forward_composite(const at::Tensor& rows, const at::Tensor& w,
                                              const at::Tensor& shift, const at::Tensor& scale1p,
                                              double eps, at::ScalarType out_dtype) {
  const auto ct = compute_dtype(out_dtype);
  const auto D = rows.size(1);
  auto rounded = rows.to(out_dtype);
  auto xr = rounded.to(ct);
  auto mean = xr.mean(-1);
  auto centered = xr - mean.unsqueeze(1);
  auto rstd = at::rsqrt(centered.square().mean(-1) + eps);
  auto y = centered * rstd.unsqueeze(1);
  if (w.defined()) y = y * w;
  if (scale1p.defined()) {
    const auto B = scale1p.size(0);
    y = (y.view({B, -1, D}) * scale1p.unsqueeze(1) + shift.unsqueeze(1)).view({-1, D});
  }
  if (!fused_norm_keeps_rounded(rows.scalar_type(), out_dtype)) rounded = at::Tensor();
  return {y.to(out_dtype), mean, rstd, rounded};
}

// LayerNorm backward through x_hat = (x - mean) * rstd, with g_hat the gradient reaching x_hat:
// g_x = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)).
FusedNormGrads fused_norm_backward_composite(const at::Tensor& grad_y, const at::Tensor& rows,
                                             const at::Tensor& w, const at::Tensor& scale1p,
                                             const at::Tensor& mean, const at::Tensor& rstd,
                                             bool has_modulation, at::ScalarType grad_x_dtype,
                                             const at::Tensor& residual_grad) {
  const auto ct = mean.scalar_type();
  const auto D = rows.size(1);
  auto x_hat = (rows.to(grad_y.scalar_type()).to(ct) - mean.unsqueeze(1)) * rstd.unsqueeze(1);
  auto g = grad_y.to(ct);
  FusedNormGrads out;
  if (has_modulation) {
    const auto B = scale1p.size(0);
    auto g3 = g.view({B, -1, D});
    auto normed = w.defined() ? x_hat * w : x_hat;  // LN(x) before the modulation
    out.shift = g3.sum(1);
    out.scale = (g3 * normed.view({B, -1, D})).sum(1);
    g = (g3 * scale1p.unsqueeze(1)).view({-1, D});
  }
  if (w.defined()) out.weight = (g * x_hat).sum(0);
  auto g_hat = w.defined() ? g * w : g;
  out.x =
      rstd.unsqueeze(1) * (g_hat - g_hat.mean(-1, true) - x_hat * (g_hat * x_hat).mean(-1, true));
  if (residual_grad.defined()) out.x = out.x + residual_grad.to(ct);
  out.x = out.x.to(grad_x_dtype);
  return out;
}

}  // namespace microdit::nn
