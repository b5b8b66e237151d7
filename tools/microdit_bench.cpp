// microdit-bench: times full MicroDiT training steps (EDM loss, forward, backward, clipping,
// AdamW) on random inputs, the same work as ../shared/tools/bench_official.py, and prints one JSON
// line: images/s, seconds per step, peak GPU memory, parameter count.
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <string>

#include "microdit/model/config.h"
#include "microdit/model/microdit.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/train_step.h"
#include "microdit/util/device.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-bench [options]

  --arch NAME     MicroDiT_XL_2 (default) or MicroDiT_Tiny_2
  --batch N       images per step (default 256)
  --mask R        mask ratio (default 0.75)
  --res N         latent resolution: 32 = 256 px (default), 64 = 512 px
  --steps N       timed steps (default 10)
  --warmup N      untimed steps first (default 3)
  --device D      cuda (default when available) or cpu
  --fp32          no bf16 autocast on CUDA
)";

struct Args {
  std::string arch = "MicroDiT_XL_2";
  int64_t batch = 256, res = 32, steps = 10, warmup = 3;
  double mask = 0.75;
  std::string device;
  bool fp32 = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--arch")
      a.arch = next();
    else if (arg == "--batch")
      a.batch = std::stoll(next());
    else if (arg == "--mask")
      a.mask = std::stod(next());
    else if (arg == "--res")
      a.res = std::stoll(next());
    else if (arg == "--steps")
      a.steps = std::stoll(next());
    else if (arg == "--warmup")
      a.warmup = std::stoll(next());
    else if (arg == "--device")
      a.device = next();
    else if (arg == "--fp32")
      a.fp32 = true;
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
  model::ZooArgs zoo;
  zoo.input_size = a.res;
  zoo.pos_interp_scale = static_cast<double>(a.res) / 32.0;
  at::manual_seed(0);
  model::DiT dit(model::zoo_config(a.arch, zoo));
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
  for (int64_t i = 0; i < a.warmup; ++i) train::train_step(dit, opt, x0, y, options);
  util::synchronize(device);
  util::reset_peak_memory(device);
  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor loss;
  for (int64_t i = 0; i < a.steps; ++i) loss = train::train_step(dit, opt, x0, y, options).loss;
  util::synchronize(device);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a.steps;
  fmt::print(R"({{"impl": "microdit-cpp", "arch": "{}", "batch": {}, "mask": {}, "res": {}, )"
             R"("device": "{}", "bf16": {}, "s_per_step": {:.4f}, "images_per_s": {:.1f}, )"
             R"("peak_gib": {:.2f}, "params": {}, "loss": {:.4f}}})"
             "\n",
             a.arch, a.batch, a.mask, a.res, device.str(), !a.fp32 && device.is_cuda(), secs,
             a.batch / secs, util::peak_memory_bytes(device) / double(1 << 30),
             dit->num_parameters(), loss.item<double>());
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
    std::cerr << "microdit-bench: " << e.what() << "\n";
    return 2;
  }
}
