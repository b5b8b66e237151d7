// microdit-sample: prompts -> images from a MicroDiT checkpoint (ours, raw or EMA, or the released
// official .pt files), the CLIP text tower and the VAE (diffusion/text_to_image.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/diffusion/text_to_image.h"
#include "microdit/nn/execution.h"
#include "microdit/eval/coco_captions.h"
#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"
#include "microdit/io/png.h"
#include "microdit/io/state_dict.h"
#include "microdit/model/state_dict_shapes.h"
#include "microdit/train/checkpoint.h"
#include "microdit/train/config.h"
#include "microdit/train/launch_env.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"
#include "microdit/util/duration.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-sample --checkpoint FILE --vae DIR --text-encoder PATH --tokenizer PATH
                       (--prompt TEXT ... | --prompts FILE) --out DIR [options]

Writes DIR/NNNNN.png (one per prompt, in order) and DIR/grid.png.
With --coco-captions: the zero-shot COCO protocol's images (docs/eval.md): COUNT captions drawn
with --caption-seed from COCO's captions file, kept in DIR/captions.jsonl, their images
DIR/NNNNN.png and the settings in DIR/generation.json. Processes started by torchrun or srun
share the work (batch b goes to rank b mod WORLD_SIZE, on cuda:LOCAL_RANK); a rerun skips the
images already written.

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
  --coco-captions F    COCO's annotations/captions_val2014.json (instead of prompts)
  --count N            with --coco-captions: images to make (default 30000)
  --caption-seed N     with --coco-captions: seed of the caption draw (default 0)
  --steps N            Heun steps, 2 to 100000 (default 30)
  --cfg X              guidance scale >= 1 (default 5.0; 1 = unguided)
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
  std::string prompts_file, coco_captions;
  int64_t count = 30000;
  uint64_t caption_seed = 0;
  bool coco_flag_given = false;  // --count or --caption-seed: meaningless without --coco-captions
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
      a.image_size = args.int_value(1);
    } else if (arg == "--in-channels") {
      a.in_channels = args.int_value(1);
    } else if (microdit::encoders::take_encoder_flag(args, a.files)) {
    } else if (arg == "--prompt") {
      a.prompts.push_back(args.value());
    } else if (arg == "--prompts") {
      a.prompts_file = args.value();
    } else if (arg == "--coco-captions") {
      a.coco_captions = args.value();
    } else if (arg == "--count") {
      a.count = args.int_value(1);
      a.coco_flag_given = true;
    } else if (arg == "--caption-seed") {
      a.caption_seed = args.seed_value();
      a.coco_flag_given = true;
    } else if (arg == "--out") {
      a.out = args.value();
    } else if (arg == "--steps") {
      a.options.steps = args.int_value(2, 100000);  // Heun's last step needs one before it
    } else if (arg == "--cfg") {
      a.options.cfg = args.number_value(1);  // 1: no guidance (as the trainer's sample.cfg)
    } else if (arg == "--seed") {
      a.options.seed = args.seed_value();
    } else if (arg == "--batch-size") {
      a.options.batch_size = args.int_value(1);
    } else if (arg == "--s-churn") {
      a.s_churn = args.number_value(0.0);
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
  if (int(!a.prompts.empty()) + int(!a.prompts_file.empty()) + int(!a.coco_captions.empty()) != 1) {
    throw std::invalid_argument(
        "give prompts with --prompt, --prompts FILE or --coco-captions FILE (one of the three)");
  }
  if (a.coco_captions.empty() && a.coco_flag_given) {
    throw std::invalid_argument("--count and --caption-seed are for --coco-captions");
  }
  for (const auto& prompt : a.prompts) {  // as a blank line of --prompts
    if (prompt.find_first_not_of(" \t") == std::string::npos) {
      throw std::invalid_argument("--prompt '" + prompt + "' is blank");
    }
  }
  if (a.image_size % 8 != 0) {
    throw std::invalid_argument(
        fmt::format("--image-size is {}, expected a multiple of 8 (the VAE's factor)", a.image_size));
  }
  // Spelled right and present (exit 2); run() then picks the process's own GPU under torchrun.
  microdit::util::resolve_device(a.device, "--device");
  microdit::encoders::pipeline_dtype(a.dtype, at::kCPU);
  return a;
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

// Everything the images depend on, for the result files of the COCO protocol.
microdit::io::Json generation_settings(const Args& a, int64_t image_size) {
  microdit::io::Json j = microdit::io::Json::object();
  j["checkpoint"] = a.checkpoint;
  j["ema"] = a.ema;
  j["coco_captions"] = a.coco_captions;
  j["count"] = a.count;
  j["caption_seed"] = static_cast<int64_t>(a.caption_seed);
  j["steps"] = a.options.steps;
  j["cfg"] = a.options.cfg;
  j["seed"] = static_cast<int64_t>(a.options.seed);
  j["s_churn"] = a.s_churn;
  // With churn the noise is drawn per batch, so the batch size changes the images.
  if (a.s_churn > 0) j["batch_size"] = a.options.batch_size;
  j["dtype"] = a.dtype;
  j["image_size"] = image_size;  // of the images made (the model's latent size x the VAE's)
  return j;
}

// A rerun into the same folder must use the settings the images so far were made with.
void check_same_settings(const std::filesystem::path& file, const microdit::io::Json& settings) {
  if (!std::filesystem::exists(file)) return;
  const auto before = microdit::io::read_json_file(file);
  for (const auto& [key, value] : settings.items()) {
    const microdit::io::Json* old = microdit::io::json_find(before, key);
    if (old == nullptr || !(*old == value)) {
      throw std::runtime_error(fmt::format("{}: made with {} = {}, this run has {}: use another --out",
                                           file.string(), key, old ? old->dump() : "(none)",
                                           value.dump()));
    }
  }
}

// This process's batches b = rank, rank + W, ... that still miss an image.
std::vector<int64_t> batches_to_make(const std::filesystem::path& out, int64_t count, int64_t batch,
                                     const microdit::train::LaunchEnv& env) {
  std::vector<int64_t> todo;
  for (int64_t b = env.rank; b * batch < count; b += env.world_size) {
    for (int64_t i = b * batch; i < std::min(count, (b + 1) * batch); ++i) {
      if (!std::filesystem::exists(microdit::diffusion::generated_image_path(out, i))) {
        todo.push_back(b);
        break;
      }
    }
  }
  return todo;
}

// The COCO protocol's images, this process's share; image i from noise seeded seed + i whatever
// the batch, so the split and a resume do not change any image.
void generate_coco(const Args& a, microdit::model::DiT& dit,
                   microdit::encoders::PipelineEncoders& encoders,
                   const microdit::diffusion::EDMConfig& edm, const microdit::train::LaunchEnv& env) {
  using namespace microdit;
  const std::filesystem::path out(a.out);
  std::filesystem::create_directories(out);
  const auto captions = eval::draw_coco_captions(a.coco_captions, a.count, a.caption_seed);
  const auto settings =
      generation_settings(a, dit->config.input_size * encoders.vae->config().downsample_factor());
  check_same_settings(out / "generation.json", settings);
  if (env.rank == 0) {
    eval::write_caption_manifest(out / "captions.jsonl", captions);
    io::write_file_atomically(out / "generation.json",
                              [&](std::ostream& o) { o << settings.dump() << "\n"; });
  }
  const int64_t batch = a.options.batch_size;
  const auto todo = batches_to_make(out, a.count, batch, env);
  spdlog::info("rank {} of {}: {} of its batches to make ({} images in all)", env.rank,
               env.world_size, todo.size(), a.count);
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t k = 0; k < todo.size(); ++k) {
    const int64_t first = todo[k] * batch, end = std::min(a.count, first + batch);
    std::vector<std::string> prompts;
    for (int64_t i = first; i < end; ++i) prompts.push_back(captions[i].caption);
    auto options = a.options;
    options.seed = a.options.seed + first;
    diffusion::write_generated_images(
        out, diffusion::text_to_image(dit, encoders, prompts, options, edm), first);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double per_batch = secs / static_cast<double>(k + 1);
    spdlog::info("rank {}: batch {}/{} | {:.2f} img/s | ETA {}", env.rank, k + 1, todo.size(),
                 static_cast<double>(batch) / per_batch,
                 util::format_duration(per_batch * static_cast<double>(todo.size() - k - 1)));
  }
}

int run(Args& a) {
  using namespace microdit;
  const auto env = train::read_launch_env();
  // A --coco-captions folder's images belong to its manifest; prompts there would replace them.
  if (a.coco_captions.empty() &&
      std::filesystem::exists(std::filesystem::path(a.out) / "generation.json")) {
    throw std::invalid_argument(fmt::format(
        "--out {} holds the images of a --coco-captions run (generation.json): give another --out",
        a.out));
  }
  const auto prompts = !a.coco_captions.empty()  ? std::vector<std::string>{}
                       : a.prompts_file.empty() ? a.prompts
                                                : diffusion::read_prompt_file(a.prompts_file);
  const auto weights = train::load_sampling_weights(a.checkpoint, a.ema);
  auto [dit_config, edm] = model_config(a, weights.config_yaml);
  edm.S_churn = a.s_churn;
  const at::Device device =
      util::resolve_device(a.device, "--device", env.distributed() ? env.local_rank : -1);
  // Weights of another architecture, or a text tower of another width, are one line before the
  // model (4.7 GB at XL) is built.
  model::check_state_dict_shapes(dit_config, weights.tensors, a.checkpoint);
  const auto dtype = microdit::encoders::pipeline_dtype(a.dtype, device);
  auto encoders = encoders::load_pipeline_encoders(a.files, device, dtype);
  if (encoders.text_encoder->config().width != dit_config.caption_channels) {
    throw std::invalid_argument(fmt::format(
        "{}: the text tower is {} wide, the model takes captions {} wide (model.caption_channels)",
        a.files.text_encoder.string(), encoders.text_encoder->config().width,
        dit_config.caption_channels));
  }
  if (encoders.vae->config().latent_channels != dit_config.in_channels) {
    throw std::invalid_argument(fmt::format(
        "{}: the VAE has {} latent channels, the model's in_channels is {}", a.files.vae.string(),
        encoders.vae->config().latent_channels, dit_config.in_channels));
  }
  model::DiT dit(dit_config);
  io::load_state_dict(*dit, weights.tensors);
  dit->to(device);
  a.options.bf16 = dtype != at::kFloat;
  // Under bf16 autocast the LayerNorms run in bf16, as in the official training.
  nn::apply_execution(*dit, {.low_precision_norm = a.options.bf16});
  if (!a.coco_captions.empty()) {
    generate_coco(a, dit, encoders, edm, env);
    return 0;
  }
  spdlog::info("sampling {} prompts: {} steps, cfg {}, seed {}", prompts.size(), a.options.steps,
               a.options.cfg, a.options.seed);
  const auto images = diffusion::text_to_image(dit, encoders, prompts, a.options, edm);
  diffusion::write_generated_images(a.out, images);
  const auto columns = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(images.size(0)))));
  io::write_png(std::filesystem::path(a.out) / "grid.png", io::make_grid(images, columns));
  spdlog::info("wrote {} images and grid.png to {}", images.size(0), a.out);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return microdit::util::run_tool<Args>("microdit-sample", argc, argv, parse, run);
}
