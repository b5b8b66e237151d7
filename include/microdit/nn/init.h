// Weight initialisers the official model uses that LibTorch lacks or names differently.
#pragma once
#include <ATen/ATen.h>

namespace microdit::nn {

// torch.nn.init.trunc_normal_(t, mean, std, a=-2, b=2): normal(mean, std) truncated to [a, b]
// (absolute bounds, not multiples of std), by inverse-CDF sampling as PyTorch does.
void trunc_normal_(at::Tensor t, double mean, double std, double a = -2.0, double b = 2.0);

// xavier_uniform_ treating `t` as a [rows, -1] matrix: fan_in = numel/rows, fan_out = rows.
// For a conv weight this is the official `xavier_uniform_(w.view([w.shape[0], -1]))`.
void xavier_uniform_2d_(at::Tensor t);

void normal_(at::Tensor t, double std);
void zeros_(at::Tensor t);

}  // namespace microdit::nn
