// TrainConfig: everything `microdit-train` reads from its YAML config (keys documented in
// docs/config.md), with validation, `--set a.b=c` overrides and the resolved YAML that is saved
// into every run directory.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/model/config.h"

namespace microdit::train {

struct RunSection {
  std::string dir = "runs/default";  // run directory: checkpoints, metrics, samples, config
  uint64_t seed = 0;
  std::string device = "auto";      // auto | cpu | cuda | cuda:N
  int64_t log_every = 10;           // steps between progress lines / metrics records
  int64_t checkpoint_every = 1000;  // steps between checkpoints (0: only at the end)
  int64_t keep_checkpoints = 3;     // newest N kept
  int64_t sample_every = 0;         // steps between sample grids (0: only at the end)
  int64_t eval_every = 0;           // steps between validation losses (0: none)
  std::vector<int64_t> eval_steps;  // and at these steps (the equal-compute points of a study)
};

struct ModelSection {
  std::string arch = "MicroDiT_XL_2";  // a zoo name, or "custom" (then `dit` holds every field)
  model::ZooArgs zoo;                  // used when arch is a zoo name
  model::DiTConfig dit;                // used when arch is "custom"
  model::DiTConfig resolved() const;   // the DiTConfig this section describes
};

struct EMASection {
  bool enabled = false;
  double smoothing = 0.99975;
  int64_t start_step = 0;  // on the global step counter
};

// Token routing (model/token_route.h, TREAD): in training, a random `ratio` of the tokens skips
// backbone blocks start_block..end_block (inclusive). ratio 0: off. Not with optim.mask_ratio.
struct RouteSection {
  double ratio = 0.0;
  int64_t start_block = 0;
  int64_t end_block = 0;
};

struct OptimSection {
  int64_t steps = 1000;          // train until the global step counter reaches this
  int64_t batch_size = 256;      // global batch (all processes, all micro-batches)
  int64_t micro_batch_size = 0;  // per process and forward pass; 0 = batch_size / world size
  double lr = 1e-4;
  double weight_decay = 0.1;  // on every parameter, one group (as the official recipe)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double moe_lr_scale = 1.0;          // lr factor for MoE expert weights (official intent 0.5)
  std::string schedule = "constant";  // constant | constant_with_warmup | cosine_with_warmup
  int64_t warmup_steps = 0;
  double alpha_f = 0.0;            // cosine: final lr factor
  int64_t t_max = 0;               // cosine: step where the decay ends (0 = steps)
  double clip_norm = 0.0;          // global gradient norm bound (0 = off)
  double mask_ratio = 0.0;         // deferred masking ratio in [0, 1)
  RouteSection route;
  double caption_drop_prob = 0.1;  // per sample, for classifier-free guidance
  // auto (bf16 on CUDA, fp32 on CPU) | bf16 (LayerNorms in bf16, as the official runs) |
  // bf16-fp32norm (plain autocast: LayerNorms in float32) | fp32
  std::string precision = "auto";
  // How the model runs, not what it computes (nn/execution.h): auto (fast on CUDA, reference
  // elsewhere) | reference (the plain LibTorch operations) | fast (the fused operations,
  // recomputed activations, float32 weight gradients).
  std::string execution = "auto";
  // Attention kernel (nn/sdp_backend.h): auto | cudnn | flash | efficient | math.
  std::string attention_backend = "auto";
  bool cuda_graph = false;  // the step captured as a CUDA graph and replayed (one CUDA process)
  EMASection ema;
  std::string continue_from;  // checkpoint: full state, new lr/schedule/EMA smoothing
  std::string init_from;      // checkpoint or weights file: weights only
  std::vector<std::string> init_ignore_keys{"pos_embed"};
};

struct DataSection {
  std::string kind = "builtin";  // builtin | safetensors | mds | synthetic
  std::string path;              // directory of shards (safetensors)
  // MDS: directories of the official preparation, mixed in this order.
  std::vector<std::string> mds_dirs;
  int64_t resolution = 256;     // MDS: reads the column latents_<resolution>
  // MDS and synthetic: caption embeddings are (caption_tokens, the model's caption_channels)
  int64_t caption_tokens = 77;
  std::string latents_key = "latents";
  std::string captions_key = "caption_latents";
  // Built-in dataset (no downloads): coloured shapes on coloured backgrounds.
  int64_t builtin_samples = 4096;
  int64_t builtin_palette = 6;
  int64_t builtin_image_size = 16;
  int64_t builtin_caption_len = 8;
  int64_t builtin_caption_channels = 32;
  // Synthetic (data/synthetic.h): random latents and captions of the model's shapes, no files.
  int64_t synthetic_samples = 256;
  // The held-out set of the validation loss (run.eval_every > 0): MDS directories (kind mds) or
  // a shard directory (kind safetensors); built-in and synthetic data hold out their own.
  std::vector<std::string> val_mds_dirs;
  std::string val_path;
  int64_t val_samples = 256;        // the first N samples of the held-out set
  std::vector<double> val_sigmas;   // empty: 5 quantiles of the training sigma distribution
  // Seeds the held-out noise (and the built-in and synthetic held-out samples); -1: run.seed.
  // Runs of different seeds compare on one held-out set with it (microdit-study's seeds).
  int64_t val_seed = -1;
};

struct SampleSection {
  std::vector<std::string> prompts;  // empty: the built-in dataset's fixed prompt set
  std::string prompts_file;          // one prompt per line, instead of `prompts`
  int64_t steps = 30;
  double cfg = 5.0;
  int64_t seed = 0;
  // Latent data: the VAE decodes the samples; the prompts are embedded once at start-up by the
  // text tower (then freed) or read from a file of caption embeddings (encoders/pipeline.h).
  std::string vae;
  std::string text_encoder;
  std::string text_config;
  std::string tokenizer;
  std::string caption_embeddings;
};

// Multi-process runs (launched by torchrun or Slurm, docs/distributed.md); ignored in a world of one.
struct DistSection {
  double timeout_s = 600;  // a collective or the rendezvous waiting longer fails, naming the ranks
  double bucket_mb = 25;   // gradient all-reduce bucket size (DDP's bucket_cap_mb)
  // 0: every rank keeps the whole AdamW state (DDP); 2: gradients reduce-scattered and AdamW
  // state sharded across ranks, parameters all-gathered (ZeRO stage 2, FSDP's SHARD_GRAD_OP).
  int64_t zero_stage = 0;
};

struct TrainConfig {
  RunSection run;
  ModelSection model;
  diffusion::EDMConfig edm;
  OptimSection optim;
  DataSection data;
  SampleSection sample;
  DistSection dist;
};

// Reads a YAML file, applies `overrides` ("a.b=c", YAML value syntax), validates. Throws
// std::invalid_argument naming the file, the key and what was expected; an unknown key names the
// closest valid one.
TrainConfig load_train_config(const std::filesystem::path& path,
                              const std::vector<std::string>& overrides = {});
TrainConfig parse_train_config(const std::string& yaml_text,
                               const std::vector<std::string>& overrides = {},
                               const std::string& source = "<config>");
void validate(const TrainConfig& config, int64_t world_size = 1);
// Images per micro-batch on each of `world_size` ranks: optim.micro_batch_size, or with 0 the
// rank's whole share of the global batch (no accumulation).
int64_t micro_batch_size(const OptimSection& optim, int64_t world_size);
// What to try when a micro-batch does not fit in the GPU's memory: the largest smaller
// optim.micro_batch_size that still tiles each rank's share of the global batch (the same
// function, more accumulation steps), as a `--set` override; or, at 1, that none is left.
std::string smaller_micro_batch_advice(const TrainConfig& config, int64_t world_size);
// The fully resolved config as YAML (every key, defaults included); parses back to the same.
std::string to_yaml(const TrainConfig& config);
// Every key's dotted path ("run.dir", "optim.ema.smoothing", ...), in schema order.
std::vector<std::string> config_keys();

}  // namespace microdit::train
