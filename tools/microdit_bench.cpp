// microdit-bench: times full MicroDiT training steps (EDM loss, forward, backward, clipping,
// AdamW) on random inputs, the same work as ../shared/tools/bench_official.py, and prints one JSON
// line: images/s, seconds per step, peak GPU memory, parameter count.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>

#include "microdit/model/config.h"
#include "microdit/model/flops.h"
#include "microdit/model/microdit.h"
#include "microdit/nn/execution.h"
#include "microdit/nn/fused_kernels.h"
#include "microdit/nn/sdp_backend.h"
#include "microdit/train/captured_step.h"
#include "microdit/train/gradient_buckets.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/process_group.h"
#include "microdit/train/train_step.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"
#include "microdit/util/error_message.h"
#include "microdit/util/kernel_profile.h"

namespace {
constexpr const char* kUsageHead = R"(usage: microdit-bench [options]

  --arch NAME     MicroDiT_XL_2 (default) or MicroDiT_Tiny_2
  --batch N       images per step (default 256)
  --mask R        mask ratio (default 0.75)
  --res N         latent resolution: 32 = 256 px (default), 64 = 512 px
  --steps N       timed steps (default 10)
  --warmup N      untimed steps first (default 3)
  --device D      cuda (default when available) or cpu
  --fp32          no bf16 autocast on CUDA
)";
constexpr const char* kUsageTail =
    R"(  --attention B   attention backend: auto (default: ATen's choice), cudnn, flash, efficient, math
  --micro-batches N  the batch in N accumulated parts (default 1; 0: the fewest that fit)
  --peak-tflops X matrix ceiling for MFU (default 796: bf16 GEMM measured on an H100/H200)
  --profile N     after timing, profile N more steps and print the time per step of all GPU
                  kernels, then of the 80 largest (CPU operators on the CPU), as JSON lines
  --cuda-graph    capture the whole step once as a CUDA graph and time its replays (CUDA builds)
  --ddp           add the data-parallel gradient all-reduce (bucketed, overlapping backward)
                  in a world of one: NCCL on CUDA, Gloo on CPU; the time over the same row
                  without --ddp is its cost per step (with --cuda-graph: captured with the step)
)";

struct Args {
  std::string arch = "MicroDiT_XL_2";
  int64_t batch = 256, res = 32, steps = 10, warmup = 3;
  double mask = 0.75;
  std::string device;
  bool fp32 = false;
  microdit::nn::Execution execution{.low_precision_norm = true};
  std::string attention = "auto";
  int64_t micro_batches = 1;
  int64_t profile = 0;
  double peak_tflops = 796.0;
  bool ddp = false;
  bool cuda_graph = false;
};

Args parse(int argc, char** argv) {
  Args a;
  const std::string usage = std::string(kUsageHead) + kUsageTail;
  for (microdit::util::ArgCursor args(argc, argv); args.next(usage.c_str());) {
    const std::string& arg = args.flag();
    if (arg == "--execution") {
      a.execution.mode = microdit::nn::parse_execution_mode(args.value(), "--execution");
      continue;
    }
    if (arg == "--arch")
      a.arch = args.value();
    else if (arg == "--batch")
      a.batch = std::stoll(args.value());
    else if (arg == "--mask")
      a.mask = std::stod(args.value());
    else if (arg == "--res")
      a.res = std::stoll(args.value());
    else if (arg == "--steps")
      a.steps = std::stoll(args.value());
    else if (arg == "--warmup")
      a.warmup = std::stoll(args.value());
    else if (arg == "--device")
      a.device = args.value();
    else if (arg == "--fp32")
      a.fp32 = true;
    else if (arg == "--attention")
      a.attention = args.value();
    else if (arg == "--micro-batches")
      a.micro_batches = std::stoll(args.value());
    else if (arg == "--peak-tflops")
      a.peak_tflops = std::stod(args.value());
    else if (arg == "--profile")
      a.profile = std::stoll(args.value());
    else if (arg == "--ddp")
      a.ddp = true;
    else if (arg == "--cuda-graph")
      a.cuda_graph = true;
    else
      throw std::invalid_argument("unknown option " + arg);
  }
  if (a.batch <= 0 || a.steps <= 0 || a.mask < 0 || a.mask >= 1) {
    throw std::invalid_argument("--batch and --steps must be positive, --mask in [0, 1)");
  }
  return a;
}

int run(const Args& a) {
  using namespace microdit;
  const at::Device device(a.device.empty() ? util::default_device_name() : a.device);
  nn::check_sdp_backend(a.attention, device, "--attention");
  const nn::SdpBackendGuard attention_backend(a.attention);
  model::ZooArgs zoo;
  zoo.input_size = a.res;
  zoo.pos_interp_scale = static_cast<double>(a.res) / 32.0;
  at::manual_seed(0);
  model::DiT dit(model::zoo_config(a.arch, zoo));
  nn::apply_execution(*dit, a.execution);
  dit->to(device);
  dit->train();
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : dit->named_parameters()) named.emplace_back(item.key(), item.value());
  train::AdamWSettings adamw;  // lr 1e-4, weight decay 0.1, eps 1e-8, as bench_official.py
  adamw.fused = device.is_cuda();
  auto optimizer = train::make_adamw(named, adamw);
  auto& opt = *optimizer;
  auto x0 = at::randn({a.batch, 4, a.res, a.res}, at::TensorOptions(device));
  auto y = at::randn({a.batch, 1, 77, 1024}, at::TensorOptions(device));
  train::TrainStepOptions options;
  options.mask_ratio = a.mask;
  options.bf16_autocast = !a.fp32;
  options.micro_batches = std::max<int64_t>(1, a.micro_batches);
  // --ddp: the data-parallel gradient all-reduce in a world of one (NCCL on CUDA, Gloo on CPU);
  // the step time minus that of the same row without --ddp is its cost per step.
  std::unique_ptr<train::ProcessGroup> group;
  std::unique_ptr<train::GradientBuckets> buckets;
  if (a.ddp) {
    train::LaunchEnv world_of_one = train::read_launch_env();
    world_of_one.world_size = 1;
    world_of_one.rank = 0;
    group = std::make_unique<train::ProcessGroup>(world_of_one, device, std::chrono::minutes(5));
    buckets = std::make_unique<train::GradientBuckets>(dit->parameters(), *group);
    options.gradient_sync = buckets.get();
  }
  for (int64_t i = 0; i < std::max<int64_t>(1, a.warmup); ++i) {
    try {
      train::train_step(dit, opt, x0, y, options);
    } catch (const c10::OutOfMemoryError&) {
      // --micro-batches 0: halve the micro-batch until one step fits.
      if (a.micro_batches != 0 || options.micro_batches * 2 > a.batch) throw;
      options.micro_batches *= 2;
      util::empty_cache(device);
      --i;
    }
  }
  util::synchronize(device);
  util::reset_peak_memory(device);
  // --cuda-graph: one more eager step and the capture count towards the peak memory, so it
  // covers the captured step's allocations.
  std::unique_ptr<train::CapturedStep> captured;
  if (a.cuda_graph)
    captured = std::make_unique<train::CapturedStep>(dit, opt, x0, y, options, /*warmup=*/1);
  auto step = [&] {
    return captured ? captured->replay() : train::train_step(dit, opt, x0, y, options);
  };
  // Each step timed on its own (synchronised), so the spread shows; the mean is over all steps.
  std::vector<double> times;
  at::Tensor loss;
  double loss_sum = 0;
  for (int64_t i = 0; i < a.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    loss = step().loss;
    util::synchronize(device);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    loss_sum += loss.item<double>();  // after the clock: the step already synchronised
  }
  const double mean = std::accumulate(times.begin(), times.end(), 0.0) / a.steps;
  const double tflop = model::training_step_flops(dit->config, {a.batch, a.mask}) * 1e-12;
  std::sort(times.begin(), times.end());
  fmt::print(
      R"({{"impl": "microdit-cpp", "arch": "{}", "batch": {}, "mask": {}, "res": {}, )"
      R"("device": "{}", "execution": "{}", "cuda_graph": {}, "micro_batches": {}, "steps": {}, )"
      R"("s_per_step": {:.4f}, "s_median": {:.4f}, "images_per_s": {:.1f}, "tflops": {:.1f}, )"
      R"("mfu": {:.3f}, "peak_gib": {:.2f}, "params": {}, "loss": {:.4f}, "loss_mean": {:.5f}}})"
      "\n",
      a.arch, a.batch, a.mask, a.res, device.str(), nn::execution_mode_name(a.execution.mode),
      a.cuda_graph, options.micro_batches, a.steps, mean, times[times.size() / 2], a.batch / mean,
      tflop / mean, tflop / mean / a.peak_tflops, util::peak_memory_bytes(device) / double(1 << 30),
      dit->num_parameters(), loss.item<double>(), loss_sum / a.steps);
  std::fflush(stdout);
  if (a.profile > 0) {
    auto totals = util::profile_kernels(
        [&] {
          for (int64_t i = 0; i < a.profile; ++i) step();
          util::synchronize(device);
        },
        device.is_cuda());
    util::print_kernel_totals(std::cout, totals, /*top=*/80, static_cast<double>(a.profile));
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const c10::OutOfMemoryError& e) {
    std::cout << R"({"impl": "microdit-cpp", "error": "out of memory"})"
              << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "microdit-bench: " << microdit::util::error_message(e) << "\n";
    return 2;
  }
}
