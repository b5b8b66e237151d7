// microdit-prepare: image-caption collections -> VAE latents + caption embeddings in MDS shards,
// the format the official pipeline and `data.kind: mds` training read (see data/prepare.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "microdit/util/arg_cursor.h"
#include "microdit/data/mds.h"
#include "microdit/data/prepare.h"
#include "microdit/util/device.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-prepare --out DIR --vae DIR --text-encoder PATH --tokenizer PATH
                        [options] INPUT...

INPUT: a folder of images with .txt captions (and/or WebDataset .tar, .tar.gz, .tar.zst shards),
a .csv or .jsonl list (image and caption columns), or a .tar shard (plain or compressed). Output: DIR/part-NNNNN/ MDS shards and
DIR/index.json; an interrupted run continues where it stopped when started again.

models (no downloads: local files only):
  --vae DIR            diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.*)
  --text-encoder PATH  CLIP text weights: an open_clip file (.safetensors/.pt/.bin, e.g. the
                       DFN5B-CLIP-ViT-H-14-378 open_clip_pytorch_model.bin) or a Hugging Face folder
  --text-config FILE   the open_clip model config (or HF config.json) of a weights file
                       (default: DFN5B-CLIP-ViT-H-14-378's text tower)
  --tokenizer PATH     bpe_simple_vocab_16e6.txt.gz (open_clip) or a folder with vocab.json and
                       merges.txt (Hugging Face)
options:
  --resolutions LIST   image sizes, comma separated, each up to 4096 (default 256,512)
  --batch-size N       images encoded together (default 32)
  --min-size N         skip images whose short side is under N pixels (default 0)
  --no-clean           keep captions as written (stripped) instead of the official cleaner
  --shard-size-mib N   MDS shard size limit (default 256, as the official writer)
  --entries-per-part N list entries per part, the unit of resumption (default 4096)
  --image-column C, --caption-column C   column or key names in .csv/.jsonl lists
  --seed N             VAE posterior sampling seed (default 2024; each part uses seed + index)
  --device D           auto (default: cuda:LOCAL_RANK when a GPU is visible), cpu, cuda, cuda:N
  --dtype T            auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32
  --num-processes N, --process-index I
                       split the parts between processes (default: WORLD_SIZE/RANK from torchrun,
                       else SLURM_NTASKS/SLURM_PROCID, else 1/0); the last process to finish
                       writes DIR/index.json
  --merge-only         only write DIR/index.json from complete parts (give the same INPUTs)
exit status: 0 done, 1 failed (the message names the file and the problem), 2 bad arguments
)";

struct Args {
  microdit::data::PrepareOptions options;
  microdit::encoders::EncoderFiles files;
  std::string device = "auto", dtype = "auto";
  bool merge_only = false;
};

int64_t env_int(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? microdit::util::parse_int(value, name) : fallback;
}

// Four times SDXL's 1024 px; past it the VAE's activations alone take gigabytes per image.
constexpr int64_t kMaxResolution = 4096;

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    out.push_back(microdit::util::parse_int(text.substr(start, comma - start), "--resolutions", 1,
                                            kMaxResolution));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

at::Device pick_device(const std::string& name) {
  // auto: the process's own GPU under torchrun or srun.
  return microdit::util::resolve_device(name, "--device",
                                        name == "auto" ? env_int("LOCAL_RANK", 0) : -1);
}

Args parse(int argc, char** argv) {
  Args a;
  auto& o = a.options;
  o.num_processes = env_int("WORLD_SIZE", env_int("SLURM_NTASKS", 1));
  o.process_index = env_int("RANK", env_int("SLURM_PROCID", 0));
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    if (arg == "--out") {
      o.out = args.value();
    } else if (microdit::encoders::take_encoder_flag(args, a.files)) {
    } else if (arg == "--resolutions") {
      o.resolutions = parse_list(args.value());
    } else if (arg == "--batch-size") {
      o.batch_size = args.int_value(1);
    } else if (arg == "--min-size") {
      o.min_size = args.int_value(0);
    } else if (arg == "--no-clean") {
      o.clean_captions = false;
    } else if (arg == "--shard-size-mib") {
      o.shard_size = args.int_value(1, int64_t{1} << 20) << 20;
    } else if (arg == "--entries-per-part") {
      o.sources.entries_per_part = args.int_value(1);
    } else if (arg == "--image-column") {
      o.sources.image_column = args.value();
    } else if (arg == "--caption-column") {
      o.sources.caption_column = args.value();
    } else if (arg == "--seed") {
      o.seed = args.int_value(0);
    } else if (arg == "--device") {
      a.device = args.value();
    } else if (arg == "--dtype") {
      a.dtype = args.value();
    } else if (arg == "--num-processes") {
      o.num_processes = args.int_value(1);
    } else if (arg == "--process-index") {
      o.process_index = args.int_value(0);
    } else if (arg == "--merge-only") {
      a.merge_only = true;
    } else if (arg.starts_with("-")) {
      throw std::invalid_argument("unknown option " + arg);
    } else {
      o.inputs.emplace_back(arg);
    }
  }
  if (o.out.empty()) throw std::invalid_argument("--out is required");
  if (a.merge_only) return a;
  if (o.inputs.empty()) throw std::invalid_argument("no INPUT given");
  if (a.files.vae.empty() || a.files.text_encoder.empty()) {
    throw std::invalid_argument("--vae and --text-encoder are required");
  }
  if (o.batch_size <= 0 || o.resolutions.empty() || o.shard_size <= 0) {
    throw std::invalid_argument("--batch-size, --resolutions and --shard-size-mib must be positive");
  }
  for (std::size_t i = 0; i < o.resolutions.size(); ++i) {
    const int64_t res = o.resolutions[i];
    if (res <= 0 || res % 8 != 0) {
      throw std::invalid_argument(fmt::format("resolution {} is not a positive multiple of 8", res));
    }
    if (std::find(o.resolutions.begin(), o.resolutions.begin() + i, res) !=
        o.resolutions.begin() + i) {
      throw std::invalid_argument(fmt::format("--resolutions lists {} twice", res));
    }
  }
  if (o.num_processes < 1 || o.process_index < 0 || o.process_index >= o.num_processes) {
    throw std::invalid_argument(fmt::format("process {} of {} is not a valid split",
                                            o.process_index, o.num_processes));
  }
  pick_device(a.device);  // spelled right and present: a bad argument (exit 2)
  microdit::encoders::pipeline_dtype(a.dtype, at::kCPU);
  return a;
}


int run(Args& a) {
  using namespace microdit;
  if (a.merge_only) {
    const auto parts = data::plan_parts(a.options.inputs, a.options.sources).size();
    if (!data::merge_prepared_parts(a.options.out, static_cast<int64_t>(parts))) {
      spdlog::error("not every part in {} is complete yet", a.options.out.string());
      return 1;
    }
    return 0;
  }
  for (const auto& input : a.options.inputs) {  // before loading the models, which takes a while
    if (!std::filesystem::exists(input)) {
      throw std::runtime_error(input.string() + ": no such file or folder");
    }
  }
  const at::Device device = pick_device(a.device);
  auto encoders = encoders::load_pipeline_encoders(a.files, device,
                                                   encoders::pipeline_dtype(a.dtype, device));
  const auto report = data::prepare_dataset(a.options, encoders);
  spdlog::info("done: {} samples written, {} skipped; {}", report.samples_written, report.skipped,
               report.merged ? "wrote " + (a.options.out / "index.json").string()
                             : std::string("other processes still have parts to finish"));
  // An empty dataset would only fail later, at the start of training, with a less clear message.
  if (report.merged && data::MDSReader(a.options.out).size() == 0) {
    throw std::runtime_error(a.options.out.string() +
                             ": no sample could be prepared; every input was skipped (the "
                             "\"skipping\" lines above say why)");
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return microdit::util::run_tool<Args>("microdit-prepare", argc, argv, parse, run);
}
