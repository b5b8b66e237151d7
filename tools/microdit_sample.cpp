// microdit-sample: prompts -> images from a MicroDiT checkpoint (ours, raw or EMA, or the released
// official .pt files), the CLIP text tower and the VAE (diffusion/text_to_image.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "microdit/diffusion/text_to_image.h"
#include "microdit/io/png.h"
#include "microdit/io/state_dict.h"
#include "microdit/train/checkpoint.h"
#include "microdit/train/config.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-sample --checkpoint FILE --vae DIR --text-encoder PATH --tokenizer PATH
                       (--prompt TEXT ... | --prompts FILE) --out DIR [options]

Writes DIR/NNNNN.png (one per prompt, in order) and DIR/grid.png.

weights:
  --checkpoint FILE    a microdit-train checkpoint (its run config gives the model), or a plain
                       weights file: .safetensors or the official .pt (also a whole
                       latent-diffusion state dict: its dit.* part is used)
  --ema                the checkpoint's EMA weights
  --arch NAME          for plain weights: MicroDiT_XL_2 (default) or MicroDiT_Tiny_2
  --image-size N       for plain weights: 256 (default) or 512 (latent N/8, pos_interp_scale N/256)
  --in-channels N      for plain weights: latent channels, 4 (SDXL VAE, default) or 16
  --vae, --text-encoder, --text-config, --tokenizer   as microdit-prepare (docs/prepare.md)
sampling:
  --prompt TEXT        a prompt (repeatable)
  --prompts FILE       one prompt per line (an empty line is an error)
  --steps N            Heun steps (default 30)
  --cfg X              guidance scale (default 5.0; 1 = unguided)
  --seed N             image i starts from noise seeded N + i (default 0)
  --batch-size N       images per sampler batch (default 8)
  --s-churn X          EDM S_churn (default 0)
  --device D           auto (default), cpu, cuda, cuda:N
  --dtype T            VAE and text encoder: auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32; the DiT
                       runs under bf16 autocast on CUDA unless T is fp32
exit status: 0 done, 1 failed (the message names the file and the problem), 2 bad arguments
)";

struct Args {
  std::string checkpoint, out, arch = "MicroDiT_XL_2", device = "auto", dtype = "auto";
  std::vector<std::string> prompts;
  std::string prompts_file;
  bool ema = false;
  int64_t image_size = 256, in_channels = 4;
  double s_churn = 0;
  microdit::encoders::EncoderFiles files;
  microdit::diffusion::TextToImageOptions options;
};

Args parse(int argc, char** argv) {
  Args a;
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    if (arg == "--checkpoint") {
      a.checkpoint = args.value();
    } else if (arg == "--ema") {
      a.ema = true;
    } else if (arg == "--arch") {
      a.arch = args.value();
    } else if (arg == "--image-size") {
      a.image_size = std::stoll(args.value());
    } else if (arg == "--in-channels") {
      a.in_channels = std::stoll(args.value());
    } else if (microdit::encoders::take_encoder_flag(args, a.files)) {
    } else if (arg == "--prompt") {
      a.prompts.push_back(args.value());
    } else if (arg == "--prompts") {
      a.prompts_file = args.value();
    } else if (arg == "--out") {
      a.out = args.value();
    } else if (arg == "--steps") {
      a.options.steps = std::stoll(args.value());
    } else if (arg == "--cfg") {
      a.options.cfg = std::stod(args.value());
    } else if (arg == "--seed") {
      a.options.seed = std::stoull(args.value());
    } else if (arg == "--batch-size") {
      a.options.batch_size = std::stoll(args.value());
    } else if (arg == "--s-churn") {
      a.s_churn = std::stod(args.value());
    } else if (arg == "--device") {
      a.device = args.value();
    } else if (arg == "--dtype") {
      a.dtype = args.value();
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  if (a.checkpoint.empty() || a.out.empty() || a.files.vae.empty() || a.files.text_encoder.empty()) {
    throw std::invalid_argument("--checkpoint, --vae, --text-encoder and --out are required");
  }
  if (a.prompts.empty() == a.prompts_file.empty()) {
    throw std::invalid_argument("give prompts with --prompt or --prompts FILE (one of the two)");
  }
  if (a.options.steps < 2 || a.options.batch_size < 1 || a.image_size % 8 != 0) {
    throw std::invalid_argument("--steps must be >= 2, --batch-size >= 1, --image-size a multiple of 8");
  }
  return a;
}

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the prompt file");
  std::vector<std::string> prompts;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) {
      throw std::runtime_error(fmt::format("{}:{}: empty prompt line", path, n));
    }
    prompts.push_back(line);
  }
  if (prompts.empty()) throw std::runtime_error(path + ": no prompts");
  return prompts;
}

// The model: the checkpoint's run config, or the zoo architecture for plain weights.
std::pair<microdit::model::DiTConfig, microdit::diffusion::EDMConfig> model_config(
    const Args& a, const std::optional<std::string>& run_yaml) {
  using namespace microdit;
  if (run_yaml) {
    const auto cfg = train::parse_train_config(*run_yaml, {}, a.checkpoint + " (its run config)");
    return {cfg.model.resolved(), cfg.edm};
  }
  model::ZooArgs zoo;
  zoo.input_size = a.image_size / 8;
  zoo.pos_interp_scale = static_cast<double>(zoo.input_size) / 32.0;
  zoo.in_channels = a.in_channels;
  return {model::zoo_config(a.arch, zoo), diffusion::EDMConfig{}};
}

int run(Args& a) {
  using namespace microdit;
  const auto prompts = a.prompts_file.empty() ? a.prompts : read_prompts(a.prompts_file);
  const auto weights = train::load_sampling_weights(a.checkpoint, a.ema);
  auto [dit_config, edm] = model_config(a, weights.config_yaml);
  edm.S_churn = a.s_churn;
  const at::Device device(a.device == "auto" ? util::default_device_name() : a.device);
  model::DiT dit(dit_config);
  io::load_state_dict(*dit, weights.tensors);
  dit->to(device);
  const auto dtype = microdit::encoders::pipeline_dtype(a.dtype, device);
  a.options.bf16 = dtype != at::kFloat;
  auto encoders = encoders::load_pipeline_encoders(a.files, device, dtype);
  spdlog::info("sampling {} prompts: {} steps, cfg {}, seed {}", prompts.size(), a.options.steps,
               a.options.cfg, a.options.seed);
  const auto images = diffusion::text_to_image(dit, encoders, prompts, a.options, edm);
  std::filesystem::create_directories(a.out);
  for (int64_t i = 0; i < images.size(0); ++i) {
    io::write_png(std::filesystem::path(a.out) / fmt::format("{:05d}.png", i),
                  io::make_grid(images.narrow(0, i, 1), 1, 0));
  }
  const auto columns = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(images.size(0)))));
  io::write_png(std::filesystem::path(a.out) / "grid.png", io::make_grid(images, columns));
  spdlog::info("wrote {} images and grid.png to {}", images.size(0), a.out);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return microdit::util::run_tool<Args>("microdit-sample", argc, argv, parse, run);
}
