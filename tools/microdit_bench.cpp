// microdit-bench: times the training step of a training config as microdit-train runs it (its
// Trainer: per-sample draws, the prefetch thread, pinned copies, the one train/train_step),
// writing nothing to disk, then the same step alone on inputs already on the device; prints one
// JSON line: images/s, seconds per step, the trainer loop's own time per step, peak GPU memory,
// the loss of every step.
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "microdit/model/flops.h"
#include "microdit/train/config.h"
#include "microdit/train/trainer.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"
#include "microdit/util/error_message.h"
#include "microdit/util/kernel_profile.h"

namespace {
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(usage: microdit-bench --config FILE [options]

Runs microdit-train's trainer on the config for warmup + steps steps (writing nothing to disk;
optim.continue_from and init_from are ignored: fresh weights time the same), then the training
step alone on one step's inputs already on the device, and prints one JSON line. The config
decides what runs: e.g. --set optim.execution=fast, --set optim.cuda_graph=true,
--set optim.precision=bf16-fp32norm, --set optim.batch_size=256, --set data.kind=synthetic
(random data of the model's shapes), --set run.device=cpu.

  --config FILE     the training config (required; keys: docs/config.md)
  --set KEY=VALUE   override one config key, as microdit-train (repeatable)
  --steps N         timed steps (default 10)
  --warmup N        steps before them, untimed (default 3)
  --profile N       after timing, profile N more steps of the step alone and print the time per
                    step of all GPU kernels, then of the 80 largest (CPU operators on the CPU)
  --peak-tflops X   matrix ceiling for MFU (default 796: bf16 GEMM measured on an H100/H200)

Fields: s_per_step, images_per_s (the trainer's steps: input path, loss read, EMA, logging);
step_s_per_step, step_images_per_s (the step alone); loop_overhead_s (their difference);
losses (every step's loss from step 1, warm-up included, as microdit-train logs them).
exit status: 0 done, 1 failed (e.g. no CUDA device), 2 bad arguments or config, 3 out of GPU
memory (a JSON error line)
)";

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  int64_t steps = 10, warmup = 3, profile = 0;
  double peak_tflops = 796.0;
};

// The flags of the benchmark before it took a config: what replaces each, as an error message.
std::optional<std::string> replaced_flag(const std::string& flag) {
  static const std::map<std::string, std::string> settings{
      {"--arch", "model.arch=NAME"},
      {"--batch", "optim.batch_size=N"},
      {"--mask", "optim.mask_ratio=R"},
      {"--res", "model.zoo.input_size=N"},
      {"--micro-batches", "optim.micro_batch_size=M (images per micro-batch, not their number)"},
      {"--attention", "optim.attention_backend=NAME"},
      {"--cuda-graph", "optim.cuda_graph=true"},
      {"--fp32", "optim.precision=fp32"},
      {"--fp32-norm", "optim.precision=bf16-fp32norm"},
      {"--device", "run.device=DEVICE"}};
  static const std::vector<std::string> fast{
      "--fused-norm",    "--fused-residual", "--recompute-act",      "--moe-rows",
      "--fused-combine", "--fused-dispatch", "--fold-residual",      "--fp32-wgrad",
      "--split-qk-norm", "--one-pass-norm-grad", "--merged-swiglu"};
  const std::string head = flag + " was replaced by the training config: use --set ";
  if (const auto it = settings.find(flag); it != settings.end()) return head + it->second;
  if (std::find(fast.begin(), fast.end(), flag) != fast.end()) {
    return head + "optim.execution=fast";
  }
  if (flag == "--ddp") {
    return "--ddp was dropped: the benchmark times one process; a data-parallel run's all-reduce "
           "shows in microdit-train under torchrun";
  }
  return std::nullopt;
}

Args parse(int argc, char** argv) {
  Args a;
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    if (arg == "--config") {
      a.config = args.value();
    } else if (arg == "--set") {
      a.overrides.push_back(args.value());
    } else if (arg == "--steps") {
      a.steps = args.int_value(1);
    } else if (arg == "--warmup") {
      a.warmup = args.int_value(0);
    } else if (arg == "--profile") {
      a.profile = args.int_value(0);
    } else if (arg == "--peak-tflops") {
      a.peak_tflops = args.number_value(1e-3);
    } else if (const auto message = replaced_flag(arg)) {
      throw std::invalid_argument(*message);
    } else {
      throw std::invalid_argument("unknown option " + arg);
    }
  }
  if (a.config.empty()) throw std::invalid_argument("--config is required");
  return a;
}

// The config as given, from fresh weights, with optim.steps covering the run (the learning rate
// schedule stays the config's when it does already).
microdit::train::TrainConfig load_config(const Args& a) {
  auto c = microdit::train::load_train_config(a.config, a.overrides);
  c.optim.continue_from.clear();
  c.optim.init_from.clear();
  c.optim.steps = std::max(c.optim.steps, a.warmup + a.steps);
  return c;
}

struct Timing {
  double mean = 0, median = 0, min = 0, max = 0;
};

Timing timing(std::vector<double> seconds) {
  Timing t;
  t.mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / seconds.size();
  std::sort(seconds.begin(), seconds.end());
  t.median = seconds[seconds.size() / 2];
  t.min = seconds.front();
  t.max = seconds.back();
  return t;
}

// Each step's time is the gap between the trainer's reports of consecutive steps (the loss read
// synchronises the device once per step, as in every training run); the peak memory counts from
// the first timed step.
struct StepTimes {
  int64_t warmup = 0;
  at::Device device{at::kCPU};  // the trainer's
  Clock::time_point last;
  int64_t done = 0;
  std::vector<double> seconds;  // of each timed step

  void on_step() {
    const auto now = Clock::now();
    if (++done > warmup) seconds.push_back(std::chrono::duration<double>(now - last).count());
    if (done == warmup) microdit::util::reset_peak_memory(device);
    last = Clock::now();
  }
};

// The next step's micro-batches, moved to the device once.
std::vector<microdit::train::MicroBatchInput> device_inputs(microdit::train::Trainer& trainer) {
  std::vector<microdit::train::MicroBatchInput> inputs;
  for (int64_t m = 0; m < trainer.step().options().micro_batches; ++m) {
    auto input = trainer.next_input(m);
    for (at::Tensor* t : input.tensors()) *t = t->to(trainer.device());
    inputs.push_back(std::move(input));
  }
  return inputs;
}

// The step alone, `steps` times on the same inputs, each synchronised.
std::vector<double> time_step_alone(microdit::train::Trainer& trainer,
                                    const std::vector<microdit::train::MicroBatchInput>& inputs,
                                    int64_t steps) {
  std::vector<double> seconds;
  for (int64_t i = 0; i < steps; ++i) {
    const auto t0 = Clock::now();
    trainer.step().run([&](int64_t m) { return inputs[m]; });
    microdit::util::synchronize(trainer.device());
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return seconds;
}

void print_row(const Args& a, const microdit::train::TrainConfig& c,
               microdit::train::Trainer& trainer, const std::vector<double>& losses,
               int64_t caption_tokens, const Timing& loop, const Timing& alone, double peak_gib) {
  using namespace microdit;
  const auto& o = c.optim;
  const auto& dit = trainer.model()->config;
  const auto& device = trainer.device();
  const double tflop =
      model::training_step_flops(dit, {o.batch_size, o.mask_ratio, caption_tokens}) * 1e-12;
  const bool bf16 = trainer.step().options().bf16;
  const double loss_mean = std::accumulate(losses.end() - a.steps, losses.end(), 0.0) / a.steps;
  fmt::print(
      R"({{"impl": "microdit-cpp", "config": "{}", "arch": "{}", "batch": {}, "mask": {}, )"
      R"("res": {}, "device": "{}", "execution": "{}", "precision": "{}", "bf16": {}, )"
      R"("attention": "{}", "cuda_graph": {}, "micro_batches": {}, "warmup": {}, "steps": {}, )"
      R"("s_per_step": {:.4f}, "s_median": {:.4f}, "s_min": {:.4f}, "s_max": {:.4f}, )"
      R"("images_per_s": {:.1f}, "step_s_per_step": {:.4f}, "step_s_median": {:.4f}, )"
      R"("step_images_per_s": {:.1f}, "loop_overhead_s": {:.4f}, )"
      R"("tflop_per_step": {:.2f}, "tflops": {:.1f}, "mfu": {:.3f}, "peak_gib": {:.2f}, )"
      R"("params": {}, "loss": {}, "loss_mean": {}, "losses": [{}]}})"
      "\n",
      a.config, c.model.arch, o.batch_size, o.mask_ratio, dit.input_size, device.str(),
      nn::execution_mode_name(trainer.execution().mode), o.precision, bf16,
      o.attention_backend, o.cuda_graph, trainer.step().options().micro_batches, a.warmup,
      a.steps, loop.mean, loop.median, loop.min, loop.max, o.batch_size / loop.mean, alone.mean,
      alone.median, o.batch_size / alone.mean, loop.mean - alone.mean, tflop, tflop / loop.mean,
      tflop / loop.mean / a.peak_tflops, peak_gib,
      trainer.model()->num_parameters(), losses.back(), loss_mean, fmt::join(losses, ", "));
  std::fflush(stdout);
}

void profile(microdit::train::Trainer& trainer,
             const std::vector<microdit::train::MicroBatchInput>& inputs, int64_t steps) {
  const auto& device = trainer.device();
  auto totals = microdit::util::profile_kernels(
      [&] { time_step_alone(trainer, inputs, steps); }, device.is_cuda());
  microdit::util::print_kernel_totals(std::cout, totals, /*top=*/80, static_cast<double>(steps));
}

int run(const Args& a) {
  using namespace microdit;
  spdlog::set_level(spdlog::level::warn);  // stdout carries the JSON line only
  const auto config = load_config(a);
  StepTimes times{.warmup = a.warmup};
  train::TrainerOptions options;
  options.write_files = false;
  options.max_steps = a.warmup + a.steps;
  options.on_step = [&times](int64_t, double) { times.on_step(); };
  train::Trainer trainer(config, options);
  // The timed steps are replays only.
  if (config.optim.cuda_graph && a.warmup < 3) {
    throw std::invalid_argument(
        "--warmup must be at least 3 with optim.cuda_graph: two eager steps, then the capture");
  }
  times.device = trainer.device();
  util::reset_peak_memory(times.device);  // again after the warm-up steps, if any
  times.last = Clock::now();
  const auto losses = trainer.run().losses;
  if (static_cast<int64_t>(losses.size()) < a.warmup + a.steps) {
    throw std::runtime_error(fmt::format("the trainer stopped after {} steps", losses.size()));
  }
  // The trainer's timed steps only: the step-alone phase below holds one more batch on the device.
  const double peak_gib = util::peak_memory_bytes(times.device) / double(1 << 30);
  const auto inputs = device_inputs(trainer);
  const auto alone = timing(time_step_alone(trainer, inputs, a.steps));
  const int64_t caption_tokens = inputs.front().batch.captions.size(2);  // (B,1,L,Cy)
  print_row(a, config, trainer, losses, caption_tokens, timing(times.seconds), alone, peak_gib);
  if (a.profile > 0) profile(trainer, inputs, a.profile);
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
  } catch (const std::invalid_argument& e) {  // flags and config
    std::cerr << "microdit-bench: " << microdit::util::error_message(e) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "microdit-bench: " << microdit::util::error_message(e) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "microdit-bench: unknown error (an exception that is not a std::exception)\n";
    return 1;
  }
}
