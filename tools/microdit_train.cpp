// microdit-train: trains MicroDiT from a YAML config (see docs/config.md).
#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <iostream>
#include <string>
#include <vector>

#include "microdit/model/state_dict_shapes.h"
#include "microdit/train/config.h"
#include "microdit/train/trainer.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/error_message.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-train --config FILE [options]

Trains MicroDiT as the YAML config says (keys: docs/config.md).

options:
  --config FILE   the run's YAML config (required)
  --set KEY=VALUE override one config key, e.g. --set optim.lr=1e-4 (repeatable)
  --resume        continue from the newest checkpoint in run.dir
  --dry-run       print the resolved config, the model size and the training FLOPs per step,
                  then exit (builds no model)
  -h, --help      this text
Multi-process runs (docs/distributed.md): start one process per GPU with torchrun
(torchrun --nproc-per-node 8 --no-python microdit-train --config ...) or srun; the process reads
RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT or SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID.

exit status: 0 done (or stopped by SIGTERM after writing a checkpoint), 1 training failed
(e.g. a non-finite loss), 2 bad arguments or config
)";

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  bool resume = false, dry_run = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    if (arg == "--config") {
      a.config = args.value();
    } else if (arg == "--set") {
      a.overrides.push_back(args.value());
    } else if (arg == "--resume") {
      a.resume = true;
    } else if (arg == "--dry-run") {
      a.dry_run = true;
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  if (a.config.empty()) throw std::invalid_argument("--config is required");
  return a;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace microdit;
  Args args;
  train::TrainConfig config;
  train::LaunchEnv launch;
  try {
    args = parse(argc, argv);
    config = train::load_train_config(args.config, args.overrides);
    launch = train::read_launch_env();
  } catch (const std::exception& e) {
    std::cerr << "microdit-train: " << microdit::util::error_message(e)
              << " (see microdit-train --help)\n";
    return 2;
  }
  if (args.dry_run) {
    const auto dit = config.model.resolved();
    std::cout << train::to_yaml(config);
    fmt::print("# model: {} parameters, {} tokens per image, {} backbone blocks\n",
               model::count_parameters(dit), dit.num_patches(), dit.depth);
    const int64_t caption_tokens = train::configured_caption_tokens(config);
    fmt::print("# training FLOPs per step: {} (model/flops.h, {} caption tokens)\n",
               model::training_step_flops(dit, train::training_step_shape(config, caption_tokens)),
               caption_tokens);
    return 0;
  }
  try {
    const auto result = train::Trainer(config, {args.resume, {}, launch}).run();
    fmt::print("finished at step {}{}\n", result.final_step,
               result.stopped_by_signal ? " (stopped by signal, checkpoint written)" : "");
    return 0;
  } catch (const std::invalid_argument& e) {
    std::cerr << "microdit-train: " << microdit::util::error_message(e) << "\n";
    return 2;
  } catch (const c10::OutOfMemoryError& e) {
    std::cerr << "microdit-train: out of GPU memory (" << microdit::util::error_message(e)
              << "); a smaller micro-batch: "
              << train::smaller_micro_batch_advice(config, launch.world_size) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "microdit-train: " << microdit::util::error_message(e) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "microdit-train: unknown error (an exception that is not a std::exception)\n";
    return 1;
  }
}
