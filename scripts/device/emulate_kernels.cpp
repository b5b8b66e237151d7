// Runs the fused CUDA kernels (src/nn/fused_norm_kernels.cuh, gated_residual_kernels.cuh,
// silu_mul_kernels.cuh, gelu_kernels.cuh, expert_combine_kernels.cuh) on the CPU: one std::thread
// per CUDA thread, a block at a time, warp shuffles and __syncthreads as barriers; and compares
// every output with the composite implementations (nn/fused_norm, nn/gated_residual, the plain ops
// of nn/activation_recompute, nn/expert_combine) on the same inputs. It checks the kernels'
// arithmetic and indexing (vector widths, strided rows, modulation, chunked column sums) where no
// GPU is at hand; memory faults, races and speed still need the GPU. Built and run by
// scripts/device/compile_check.sh (CUDA's cuda_bf16.h for the bfloat16 type).
#include <ATen/ATen.h>
#include <cuda_bf16.h>

#include <barrier>
#include <cmath>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "microdit/nn/expert_combine.h"
#include "microdit/nn/fused_norm.h"
#include "microdit/nn/gated_residual.h"

// CUDA's built-in variables and intrinsics, for one block at a time.
struct Index {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Index threadIdx;
Index blockIdx, blockDim, gridDim;
struct Warp {
  std::unique_ptr<std::barrier<>> barrier;
  float lanes[32];
};
std::vector<Warp> warps;
std::unique_ptr<std::barrier<>> block_barrier;
thread_local int warp_of_thread, lane_of_thread;

float __shfl_xor_sync(unsigned, float value, int offset) {
  auto& warp = warps[warp_of_thread];
  warp.lanes[lane_of_thread] = value;
  warp.barrier->arrive_and_wait();
  const float other = warp.lanes[lane_of_thread ^ offset];
  warp.barrier->arrive_and_wait();
  return other;
}
void __syncthreads() { block_barrier->arrive_and_wait(); }
float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
float __fmul_rn(float a, float b) { return a * b; }  // built without fma contraction (x86-64)
float __fadd_rn(float a, float b) { return a + b; }
using std::min;
#undef __global__
#define __global__
#undef __shared__
#define __shared__ static  // one block at a time: shared by the block's threads
#undef __forceinline__
#define __forceinline__ inline

#include "../../src/nn/expert_combine_kernels.cuh"
#include "../../src/nn/fused_norm_kernels.cuh"
#include "../../src/nn/gated_residual_kernels.cuh"
#include "../../src/nn/gelu_kernels.cuh"
#include "../../src/nn/kernel_launch.cuh"
#include "../../src/nn/silu_mul_kernels.cuh"

namespace {
using namespace microdit::nn::cuda_kernels::device;

template <class Kernel>
void launch(Index grid, Index block, Kernel&& kernel) {
  gridDim = grid;
  blockDim = block;
  const unsigned threads = block.x * block.y;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        warps = std::vector<Warp>(threads / 32);
        for (auto& w : warps) w.barrier = std::make_unique<std::barrier<>>(32);
        block_barrier = std::make_unique<std::barrier<>>(threads);
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            threadIdx = {t % block.x, t / block.x, 0};
            warp_of_thread = static_cast<int>(t / 32);
            lane_of_thread = static_cast<int>(t % 32);
            kernel();
          });
        for (auto& thread : pool) thread.join();
      }
}

using microdit::nn::cuda_kernels::mutable_ptr;
using microdit::nn::cuda_kernels::ptr;

template <typename T>
at::ScalarType scalar_type() {
  return std::is_same_v<T, float> ? at::kFloat : at::kBFloat16;
}

double max_relative(const at::Tensor& ours, const at::Tensor& ref) {
  return (ours.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>() /
         ref.to(at::kDouble).abs().max().item<double>();
}

int failures = 0;
void expect(const char* what, double error, double bound) {
  const bool ok = error <= bound;
  std::printf(" %s %.1e%s", what, error, ok ? "" : " FAIL");
  failures += ok ? 0 : 1;
}

// ours within a rounding of ref (elementwise kernels against the plain ops): relative 1e-6 in
// float32, 2^-7 in bf16, where also at most 1% of the elements apart (a missed intermediate
// rounding puts a fifth or more apart).
void expect_within_a_rounding(const char* what, const at::Tensor& ours, const at::Tensor& ref) {
  const bool low = ours.scalar_type() != at::kFloat;
  expect(what, max_relative(ours, ref), low ? std::ldexp(1.0, -7) : 1e-6);
  if (low) expect("apart", ours.ne(ref).to(at::kDouble).mean().item<double>(), 0.01);
}

// One case: x (B,N,D) of Tin, possibly the middle third of (B,N,3D); output Tout; V per access.
template <typename Tin, typename Tout, int V>
void run_case(int64_t B, int64_t N, int64_t D, bool weight, bool modulation, bool strided) {
  const auto in_type = scalar_type<Tin>(), out_type = scalar_type<Tout>();
  std::printf("%s->%s B%ld N%ld D%ld V%d weight %d modulation %d strided %d:",
              std::is_same_v<Tin, float> ? "f32" : "bf16",
              std::is_same_v<Tout, float> ? "f32" : "bf16", static_cast<long>(B),
              static_cast<long>(N), static_cast<long>(D), V, weight, modulation, strided);
  at::manual_seed(7);
  auto wide = (at::randn({B, N, strided ? 3 * D : D}) * 2 + 0.5).to(in_type);
  const auto rows = (strided ? wide.narrow(2, D, D) : wide).flatten(0, 1);
  const int64_t R = B * N;
  auto w = weight ? (at::rand({D}) + 0.5).to(out_type).to(at::kFloat) : at::Tensor();
  auto shift = modulation ? at::randn({B, D}) : at::Tensor();
  auto scale1p = modulation ? 1 + at::randn({B, D}) * 0.5 : at::Tensor();
  const auto ref =
      microdit::nn::fused_norm_forward_composite(rows, w, shift, scale1p, 1e-6, out_type);

  auto y = at::empty({R, D}, out_type), mean = at::empty({R}), rstd = at::empty({R});
  auto rounded = microdit::nn::fused_norm_keeps_rounded(in_type, out_type)
                     ? at::empty({R, D}, out_type)
                     : at::Tensor();
  const int64_t per_sample = modulation ? N : R;
  launch({static_cast<unsigned>(row_blocks(R)), 1, 1}, {kWarp, kWarpsPerBlock, 1}, [&] {
    norm_forward_kernel<Tin, Tout, V>(
        ptr<Tin>(rows), rows.stride(0), R, static_cast<int>(D), ptr<float>(w), ptr<float>(shift),
        ptr<float>(scale1p), per_sample, 1e-6f, mutable_ptr<Tout>(y), mutable_ptr<float>(mean),
        mutable_ptr<float>(rstd), mutable_ptr<Tout>(rounded));
  });
  const double out_bound = out_type == at::kFloat ? 1e-5 : std::ldexp(1.0, -7);
  expect("y", max_relative(y, ref.y), out_bound);
  expect("mean", max_relative(mean, ref.mean), 1e-5);
  expect("rstd", max_relative(rstd, ref.rstd), 1e-5);
  if (rounded.defined()) expect("rounded", max_relative(rounded, ref.rounded), 0.0);

  // Backward from what forward keeps: the rounded copy (Tout) or the rows themselves (Tin).
  const auto grad_y = at::randn({R, D}).to(out_type);
  const auto& kept = ref.rounded.defined() ? ref.rounded : rows;
  const auto grad_ref = microdit::nn::fused_norm_backward_composite(
      grad_y, kept, w, scale1p, ref.mean, ref.rstd, modulation, in_type);
  auto gx = at::empty({R, D}, in_type);
  const int64_t samples = modulation ? B : 1, n = R / samples, chunks = chunk_count(n);
  at::Tensor part_shift, part_scale, part_w;
  if (modulation)
    part_shift = at::zeros({chunks, samples, D}), part_scale = at::zeros_like(part_shift);
  if (weight) part_w = at::zeros({chunks, samples, D});
  auto backward = [&](auto kept_type) {
    using Tk = decltype(kept_type);
    launch({static_cast<unsigned>(row_blocks(R)), 1, 1}, {kWarp, kWarpsPerBlock, 1}, [&] {
      norm_backward_rows_kernel<Tk, Tout, Tin, V>(
          ptr<Tout>(grad_y), ptr<Tk>(kept), kept.stride(0), R, static_cast<int>(D), ptr<float>(w),
          ptr<float>(scale1p), n, ptr<float>(mean), ptr<float>(rstd), nullptr, mutable_ptr<Tin>(gx),
          D);
    });
    if (!modulation && !weight) return;
    launch({static_cast<unsigned>(column_blocks(D, V)), static_cast<unsigned>(samples),
            static_cast<unsigned>(chunks)},
           {kWarp, kWarpsPerBlock, 1}, [&] {
             norm_backward_columns_kernel<Tk, Tout, V>(
                 ptr<Tout>(grad_y), ptr<Tk>(kept), kept.stride(0), static_cast<int>(D), n,
                 rows_per_chunk(n), ptr<float>(w), ptr<float>(scale1p), ptr<float>(mean),
                 ptr<float>(rstd), mutable_ptr<float>(part_shift), mutable_ptr<float>(part_scale),
                 mutable_ptr<float>(part_w));
           });
  };
  if (ref.rounded.defined()) {
    backward(Tout{});
  } else {
    backward(Tin{});
  }
  expect("grad_x", max_relative(gx, grad_ref.x), in_type == at::kFloat ? 1e-5 : 1e-2);
  // The residual stream's gradient added in the same pass (fused_norm_with_residual).
  const auto gres = at::randn({R, D}).to(in_type);
  const auto folded_ref = microdit::nn::fused_norm_backward_composite(
      grad_y, kept, w, scale1p, ref.mean, ref.rstd, modulation, in_type, gres);
  // Written as the second half of wider rows (a slice of a projection's gradient).
  const at::Tensor folded_rows = at::zeros({R, 2 * D}, in_type);
  auto folded = folded_rows.narrow(1, D, D);
  auto fold = [&](auto kept_type) {
    using Tk = decltype(kept_type);
    launch({static_cast<unsigned>(row_blocks(R)), 1, 1}, {kWarp, kWarpsPerBlock, 1}, [&] {
      norm_backward_rows_kernel<Tk, Tout, Tin, V>(
          ptr<Tout>(grad_y), ptr<Tk>(kept), kept.stride(0), R, static_cast<int>(D), ptr<float>(w),
          ptr<float>(scale1p), n, ptr<float>(mean), ptr<float>(rstd), ptr<Tin>(gres),
          mutable_ptr<Tin>(folded), folded.stride(0));
    });
  };
  if (ref.rounded.defined()) {
    fold(Tout{});
  } else {
    fold(Tin{});
  }
  expect("grad_x+residual", max_relative(folded, folded_ref.x),
         in_type == at::kFloat ? 1e-5 : 1e-2);
  expect("other half", folded_rows.narrow(1, 0, D).abs().max().item<double>(), 0.0);
  if (modulation) {
    expect("grad_shift", max_relative(part_shift.sum(0), grad_ref.shift), 1e-5);
    expect("grad_scale", max_relative(part_scale.sum(0), grad_ref.scale), 1e-5);
  }
  if (weight)
    expect("grad_weight", max_relative(part_w.sum(at::IntArrayRef{0, 1}), grad_ref.weight), 1e-5);
  std::printf("\n");
}

// x (B,N,D) of Tx, gate a (B,D) chunk of a (B,6D) projection and y of Tp; V per access.
template <typename Tx, typename Tp, int V>
void run_residual_case(int64_t B, int64_t N, int64_t D) {
  using To = std::conditional_t<std::is_same_v<Tx, float> || std::is_same_v<Tp, float>, float,
                                __nv_bfloat16>;
  const auto x_type = scalar_type<Tx>(), p_type = scalar_type<Tp>(), o_type = scalar_type<To>();
  std::printf("residual x %s y %s B%ld N%ld D%ld V%d:", std::is_same_v<Tx, float> ? "f32" : "bf16",
              std::is_same_v<Tp, float> ? "f32" : "bf16", static_cast<long>(B),
              static_cast<long>(N), static_cast<long>(D), V);
  at::manual_seed(11);
  const auto x = at::randn({B, N, D}).to(x_type), y = at::randn({B, N, D}).to(p_type);
  const auto gate = at::randn({B, 6 * D}).to(p_type).narrow(1, 2 * D, D);
  const auto ref = x + gate.unsqueeze(1) * y;
  auto out = at::empty({B, N, D}, o_type);
  const int64_t R = B * N;
  launch({static_cast<unsigned>(row_blocks(R)), 1, 1}, {kWarp, kWarpsPerBlock, 1}, [&] {
    gated_residual_forward_kernel<Tx, Tp, To, V>(ptr<Tx>(x), ptr<Tp>(gate), gate.stride(0),
                                                 ptr<Tp>(y), R, N, static_cast<int>(D),
                                                 mutable_ptr<To>(out));
  });
  expect("out", max_relative(out, ref), 0.0);

  const auto grad = at::randn({B, N, D}).to(o_type);
  const auto grad_ref = microdit::nn::gated_residual_backward_composite(grad, gate, y, x_type);
  auto dy = at::empty({B, N, D}, p_type);
  auto dx = x_type == o_type ? at::Tensor() : at::empty({B, N, D}, x_type);
  const int64_t chunks = chunk_count(N);
  auto part_gate = at::zeros({chunks, B, D});
  launch({static_cast<unsigned>(column_blocks(D, V)), static_cast<unsigned>(B),
          static_cast<unsigned>(chunks)},
         {kWarp, kWarpsPerBlock, 1}, [&] {
           gated_residual_backward_kernel<To, Tp, Tx, V>(
               ptr<To>(grad), ptr<Tp>(gate), gate.stride(0), ptr<Tp>(y), static_cast<int>(D), N,
               rows_per_chunk(N), mutable_ptr<Tp>(dy), mutable_ptr<Tx>(dx),
               mutable_ptr<float>(part_gate));
         });
  expect("grad_y", max_relative(dy, grad_ref.y), 0.0);
  if (dx.defined()) expect("grad_x", max_relative(dx, grad_ref.x), 0.0);
  expect("grad_gate", max_relative(part_gate.sum(0), grad_ref.gate), 1e-5);
  std::printf("\n");
}
// silu(a) * b over n elements of T, V per access, against the plain ops (forward) and their
// autograd formulas with silu(a) recomputed (backward). The CPU's exp differs from CUDA's in the
// last bits, so bf16 results may be one rounding apart.
template <typename T, int V>
void run_silu_mul_case(int64_t n) {
  const auto type = scalar_type<T>();
  std::printf("silu_mul %s n%ld V%d:", std::is_same_v<T, float> ? "f32" : "bf16",
              static_cast<long>(n), V);
  at::manual_seed(13);
  const auto a = (at::randn({n}) * 3).to(type), b = at::randn({n}).to(type);
  const auto g = at::randn({n}).to(type);
  auto out = at::empty({n}, type), da = at::empty({n}, type), db = at::empty({n}, type);
  const int64_t packs = n / V;
  const Index grid{static_cast<unsigned>(elementwise_blocks(packs)), 1, 1};
  launch(grid, {kElementwiseThreads, 1, 1}, [&] {
    silu_mul_forward_kernel<T, V>(ptr<T>(a), ptr<T>(b), packs, mutable_ptr<T>(out));
  });
  launch(grid, {kElementwiseThreads, 1, 1}, [&] {
    silu_mul_backward_kernel<T, V>(ptr<T>(g), ptr<T>(a), ptr<T>(b), packs, mutable_ptr<T>(da),
                                   mutable_ptr<T>(db));
  });
  // Each within a rounding of the plain ops, and rounded where they round.
  expect_within_a_rounding("out", out, at::silu(a) * b);
  expect_within_a_rounding("grad_a", da, at::silu_backward(g * b, a));
  expect_within_a_rounding("grad_b", db, g * at::silu(a));
  std::printf("\n");
}

// The MoE experts' GELU backward with gelu(u) recomputed over n elements of T, V per access, the
// gradient written over the incoming one as the caller does, against ATen's gelu and
// gelu_backward as ATen's CUDA kernels compute them, in float and rounded once: within a rounding
// (the CPU's erf and exp differ from CUDA's in the last bits). ATen's CPU gelu and gelu_backward
// are not the reference: for u far below zero they differ from CUDA's formulas (the cancellation
// in 1 + erf(u / sqrt 2)) in values under 1e-7, which bf16 still tells apart.
template <typename T, int V>
void run_gelu_case(int64_t n) {
  const auto type = scalar_type<T>();
  std::printf("gelu %s n%ld V%d:", std::is_same_v<T, float> ? "f32" : "bf16", static_cast<long>(n),
              V);
  at::manual_seed(19);
  const auto u = (at::randn({n}) * 3).to(type), g = at::randn({n}).to(type);
  auto h = at::empty({n}, type), du = g.clone();
  const int64_t packs = n / V;
  launch({static_cast<unsigned>(elementwise_blocks(packs)), 1, 1}, {kElementwiseThreads, 1, 1},
         [&] {
           gelu_recompute_backward_kernel<T, V>(ptr<T>(du), ptr<T>(u), packs, mutable_ptr<T>(h),
                                                mutable_ptr<T>(du));
         });
  const auto uf = u.to(at::kFloat);
  expect_within_a_rounding("h", h, (uf * 0.5 * (1 + at::erf(uf * M_SQRT1_2))).to(type));
  const auto cdf = 0.5 * (1 + at::erf(uf * M_SQRT1_2));
  const auto pdf = at::exp(-0.5 * uf * uf) * (M_2_SQRTPI * M_SQRT1_2 * 0.5);
  expect_within_a_rounding("grad_u", du, (g.to(at::kFloat) * (cdf + uf * pdf)).to(type));
  std::printf("\n");
}

// The MoE combine over B samples of T tokens, E experts choosing K tokens each, width D: h of
// Th, float32 probabilities; V per access. Forward sums in the composite's order (equal);
// backward's probability sums are warp sums (another order).
template <typename Th, int V>
void run_combine_case(int64_t B, int64_t T, int64_t E, int64_t K, int64_t D) {
  const auto type = scalar_type<Th>();
  std::printf(
      "combine %s B%ld T%ld E%ld K%ld D%ld V%d:", std::is_same_v<Th, float> ? "f32" : "bf16",
      static_cast<long>(B), static_cast<long>(T), static_cast<long>(E), static_cast<long>(K),
      static_cast<long>(D), V);
  at::manual_seed(17);
  auto scores = at::softmax(at::randn({B, E, T}), 1);
  const auto indices = std::get<1>(at::topk(scores, K, -1)).contiguous();
  const auto probs = scores.gather(2, indices).contiguous();
  const auto h = at::randn({E, B * K, D}).to(type);
  const auto slots = microdit::nn::expert_choice_slots(indices, T);
  auto out = at::empty({B, T, D}, type);
  launch({static_cast<unsigned>(row_blocks(B * T)), 1, 1}, {kWarp, kWarpsPerBlock, 1}, [&] {
    expert_combine_forward_kernel<Th, V>(ptr<Th>(h), ptr<float>(probs), ptr<int>(slots), B * T, T,
                                         static_cast<int>(E), B, K, static_cast<int>(D),
                                         mutable_ptr<Th>(out));
  });
  expect("out",
         max_relative(out, microdit::nn::expert_combine_forward_composite(h, probs, indices, T)),
         0.0);
  const auto grad = at::randn({B, T, D}).to(type);
  const auto ref = microdit::nn::expert_combine_backward_composite(grad, h, probs, indices);
  auto dh = at::empty_like(h), dp = at::empty({B, E, K});
  const int64_t R = E * B * K;
  launch({static_cast<unsigned>(row_blocks(R)), 1, 1}, {kWarp, kWarpsPerBlock, 1}, [&] {
    expert_combine_backward_kernel<Th, V>(ptr<Th>(grad), ptr<Th>(h), ptr<float>(probs),
                                          ptr<int64_t>(indices), R, T, static_cast<int>(E), B, K,
                                          static_cast<int>(D), mutable_ptr<Th>(dh),
                                          mutable_ptr<float>(dp));
  });
  expect("grad_h", max_relative(dh, ref.h), 0.0);
  expect("grad_probs", max_relative(dp, ref.probs),
         type == at::kFloat ? 1e-5 : std::ldexp(1.0, -7));
  std::printf("\n");
}
}  // namespace

int main() {
  // The model's dtype pairs; widths with four (72, 136) and one (70) element per access; 150 rows
  // per sample and 450 rows without modulation, so the column sums run in several chunks.
  run_case<float, __nv_bfloat16, kVector>(2, 70, 72, true, true, false);
  run_case<float, __nv_bfloat16, 1>(2, 70, 70, true, true, false);
  run_case<__nv_bfloat16, __nv_bfloat16, kVector>(2, 9, 72, false, false, true);
  run_case<__nv_bfloat16, __nv_bfloat16, 1>(2, 9, 70, true, true, true);
  run_case<float, float, kVector>(3, 150, 72, true, true, false);
  run_case<float, float, 1>(3, 150, 70, true, false, false);
  run_case<float, float, kVector>(2, 9, 136, false, true, true);
  // Weight without modulation (the blocks' norm2): 150 rows as one sample, three chunks.
  run_case<__nv_bfloat16, __nv_bfloat16, kVector>(3, 50, 72, true, false, false);
  // The gated residual: autocast's pairs (float32 or bf16 x, bf16 gate and y), float32, and bf16
  // x with float32 y (x's gradient then rounded); 150 tokens: three chunks of gate sums.
  run_residual_case<float, __nv_bfloat16, kVector>(3, 150, 72);
  run_residual_case<__nv_bfloat16, __nv_bfloat16, kVector>(2, 9, 136);
  run_residual_case<__nv_bfloat16, __nv_bfloat16, 1>(2, 70, 70);
  run_residual_case<float, float, kVector>(3, 150, 72);
  run_residual_case<__nv_bfloat16, float, 1>(2, 9, 70);
  // SwiGLU's silu(a) * b: 4 and 1 elements per access, more elements than one block's threads.
  run_silu_mul_case<__nv_bfloat16, kVector>(4 * 600);
  run_silu_mul_case<__nv_bfloat16, 1>(601);
  run_silu_mul_case<float, kVector>(4 * 300);
  // The experts' GELU backward: 4 and 1 elements per access, several blocks.
  run_gelu_case<__nv_bfloat16, kVector>(4 * 600);
  run_gelu_case<__nv_bfloat16, 1>(601);
  run_gelu_case<float, kVector>(4 * 300);
  // The MoE combine: the first case has 5 tokens no expert chose and 17 with several choices;
  // 4 and 1 elements per access.
  run_combine_case<__nv_bfloat16, kVector>(3, 20, 4, 6, 72);
  run_combine_case<__nv_bfloat16, 1>(2, 9, 3, 4, 70);
  run_combine_case<float, kVector>(3, 20, 4, 6, 136);
  run_combine_case<float, 1>(2, 9, 3, 4, 70);
  // 18 choice rows: the backward's last block has warps past the end.
  run_combine_case<__nv_bfloat16, 1>(2, 9, 3, 3, 70);
  std::printf("%s\n", failures == 0 ? "all kernels match the composite path" : "FAILED");
  return failures == 0 ? 0 : 1;
}
