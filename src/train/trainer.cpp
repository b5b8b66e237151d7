#include "microdit/train/trainer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>

#include "microdit/data/builtin_shapes.h"
#include "microdit/data/mds_dataset.h"
#include "microdit/data/prefetcher.h"
#include "microdit/data/prompt_match.h"
#include "microdit/data/safetensors_shards.h"
#include "microdit/data/sample_order.h"
#include "microdit/data/synthetic.h"
#include "microdit/diffusion/edm_sampler.h"
#include "microdit/io/atomic_file.h"
#include "microdit/io/png.h"
#include "microdit/io/state_dict.h"
#include "microdit/nn/execution.h"
#include "microdit/nn/sdp_backend.h"
#include "microdit/train/checkpoint.h"
#include "microdit/train/ema.h"
#include "microdit/train/gradient_buckets.h"
#include "microdit/train/lr_schedule.h"
#include "microdit/train/metrics_log.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/process_group.h"
#include "microdit/train/sample_draws.h"
#include "microdit/train/sample_grid.h"
#include "microdit/train/sharded_adamw.h"
#include "microdit/train/tensorboard.h"
#include "microdit/train/train_step.h"
#include "microdit/train/validation_loss.h"
#include "microdit/util/device.h"
#include "microdit/util/duration.h"
#include "microdit/util/error_message.h"

namespace microdit::train {
namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int signal) { g_stop_signal = signal; }

// Installs the SIGTERM/SIGINT handlers for the duration of a run, restores the old ones after.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    old_term_ = std::signal(SIGTERM, on_stop_signal);
    old_int_ = std::signal(SIGINT, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGTERM, old_term_);
    std::signal(SIGINT, old_int_);
  }
 private:
  void (*old_term_)(int);
  void (*old_int_)(int);
};

// In a multi-process run "auto" and "cuda" mean this process's GPU, cuda:LOCAL_RANK.
// optim.execution auto: the fast path where its kernels are (CUDA), the reference elsewhere. The
// LayerNorms' precision under autocast is optim.precision's.
nn::Execution resolve_execution(const OptimSection& optim, const at::Device& device) {
  const auto mode =
      optim.execution == "auto"
          ? (device.is_cuda() ? nn::ExecutionMode::fast : nn::ExecutionMode::reference)
          : nn::parse_execution_mode(optim.execution, "optim.execution");
  return {mode, /*low_precision_norm=*/optim.precision != "bf16-fp32norm"};
}

// Where the model's shapes meet the data's: the first sample of `set` must fit the model.
void check_sample_shapes(const data::Dataset& set, const model::DiTConfig& dit,
                         const std::string& what) {
  const auto sample = set.get(0);
  const std::vector<int64_t> expected{dit.in_channels, dit.input_size, dit.input_size};
  if (sample.latents.sizes() != at::IntArrayRef(expected) ||
      sample.caption.size(-1) != dit.caption_channels) {
    throw std::invalid_argument(fmt::format(
        "{} gives latents {} and captions {}, the model expects latents [{},{},{}] and {} "
        "caption channels",
        what, io::shape_string(sample.latents.sizes()), io::shape_string(sample.caption.sizes()),
        dit.in_channels, dit.input_size, dit.input_size, dit.caption_channels));
  }
}

data::MDSLatentDatasetOptions mds_options(const DataSection& d, const model::DiTConfig& dit) {
  data::MDSLatentDatasetOptions o;
  o.resolution = d.resolution;
  o.latent_channels = dit.in_channels;
  o.latent_size = dit.input_size;  // the model decides; resolution picks the column
  o.caption_tokens = d.caption_tokens;
  o.caption_channels = dit.caption_channels;
  return o;
}

// A pool of `samples` random samples of the model's shapes.
data::SyntheticOptions synthetic_options(const DataSection& d, const model::DiTConfig& dit,
                                         int64_t samples, uint64_t seed) {
  data::SyntheticOptions o;
  o.num_samples = samples;
  o.latent_channels = dit.in_channels;
  o.latent_size = dit.input_size;
  o.caption_tokens = d.caption_tokens;
  o.caption_channels = dit.caption_channels;
  o.seed = seed;
  return o;
}

data::SafetensorsShardsOptions shards_options(const DataSection& d) {
  data::SafetensorsShardsOptions o;
  o.latents_key = d.latents_key;
  o.caption_key = d.captions_key;
  return o;
}

}  // namespace

struct Trainer::State {
  TrainConfig cfg;
  TrainerOptions opts;
  std::filesystem::path run_dir;
  at::Device device{at::kCPU};
  bool bf16 = false;
  nn::Execution execution;  // optim.execution resolved for `device`, and optim.precision's norms
  model::DiTConfig dit_cfg;
  model::DiT dit{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<EMA> ema;
  std::unique_ptr<nn::SdpBackendGuard> attention_backend;  // optim.attention_backend, for the run
  std::unique_ptr<data::Dataset> dataset;
  const data::BuiltinShapes* builtin = nullptr;  // `dataset` when data.kind is builtin
  std::unique_ptr<SampleGrid> samples;           // sample.*: none on latent data without a VAE
  std::unique_ptr<ValidationLoss> validation;    // run.eval_every > 0 or run.eval_steps
  std::unique_ptr<data::SampleOrder> order;
  std::unique_ptr<EventWriter> events;
  std::unique_ptr<MetricsLog> metrics;
  int64_t step = 0;
  // Analytic FLOPs of one training step (model/flops.h), and the compute so far (with what
  // optim.continue_from or --resume carried over): the equal-compute axes of metrics.jsonl.
  double step_flops = 0;
  double train_flops = 0;
  double train_seconds = 0;
  at::Tensor grad_norm;  // of the last step, before clipping; on the device, read when logged
  int64_t world_size = 1, rank = 0;
  std::unique_ptr<ProcessGroup> group;       // a world of more than one
  std::unique_ptr<GradientBuckets> buckets;  // data-parallel gradient all-reduce (dist.zero_stage 0)
  std::unique_ptr<ShardedAdamW> sharded;     // instead of `optimizer` with dist.zero_stage 2
  std::unique_ptr<TrainStep> train_step;     // forward, backward, sync, clipping, AdamW
  bool stop = false;  // a stop signal reached some rank: every rank stops after this step
  // A world of one stops at the signal; ranks stop together at the step whose loss all-reduce
  // first carries it.
  bool stop_requested() const { return group ? stop : g_stop_signal != 0; }
  std::string last_checkpoint = "none";

  // Last: destroyed (its thread joined) before anything make_input reads.
  std::unique_ptr<data::Prefetcher<MicroBatchInput>> prefetch;

  void setup();
  void setup_distributed();
  void make_dataset();
  void make_sample_grid();
  void make_validation();
  // Learning rate of update t (from 0) on the global counter: lr * f(t), Composer's convention.
  double lr_at(int64_t t) const {
    const auto& o = cfg.optim;
    return o.lr *
           lr_factor({o.schedule, o.warmup_steps, o.alpha_f, o.t_max > 0 ? o.t_max : o.steps}, t);
  }
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const {
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& item : dit->named_parameters()) named.emplace_back(item.key(), item.value());
    return named;
  }
  AdamWSettings adamw_settings() const {
    const auto& o = cfg.optim;
    return {o.lr,           o.beta1,         o.beta2, o.eps, o.weight_decay,
            o.moe_lr_scale, device.is_cuda()};  // fused AdamW on CUDA
  }
  torch::optim::AdamW& step_optimizer() { return sharded ? sharded->shard_optimizer() : *optimizer; }
  void restore();
  double train_one_step();
  int64_t micro_batch_size() const { return train::micro_batch_size(cfg.optim, world_size); }
  int64_t micro_batches() const { return cfg.optim.batch_size / (world_size * micro_batch_size()); }
  MicroBatchInput make_input(int64_t key) const;
  void make_train_step();
  double agree_on_loss_and_stop(double loss);
  void save(bool final);
  void log_progress(double loss, double images_per_s, double eta_s);
  std::optional<data::PromptMatch> sample_grid();
  void validation_losses();
  bool evaluates_at(int64_t at) const {
    const auto& r = cfg.run;
    return (r.eval_every > 0 && at % r.eval_every == 0) ||
           std::find(r.eval_steps.begin(), r.eval_steps.end(), at) != r.eval_steps.end();
  }
  void log_validation(const std::string& name, const ValidationResult& result);
};

Trainer::Trainer(TrainConfig config, TrainerOptions options) : s_(std::make_unique<State>()) {
  s_->cfg = std::move(config);
  s_->opts = std::move(options);
  s_->world_size = s_->opts.launch.world_size;
  s_->rank = s_->opts.launch.rank;
  validate(s_->cfg, s_->world_size);
  s_->setup();
}

Trainer::~Trainer() = default;

model::DiT& Trainer::model() { return s_->dit; }

const at::Device& Trainer::device() const { return s_->device; }

const nn::Execution& Trainer::execution() const { return s_->execution; }

TrainStep& Trainer::step() { return *s_->train_step; }

MicroBatchInput Trainer::next_input(int64_t m) const {
  return s_->make_input(s_->step * s_->micro_batches() + m);
}

void Trainer::State::setup() {
  run_dir = cfg.run.dir;
  device = util::resolve_device(cfg.run.device, "run.device",
                                opts.launch.distributed() ? opts.launch.local_rank : -1);
  bf16 = cfg.optim.precision.starts_with("bf16") ||
         (cfg.optim.precision == "auto" && device.is_cuda());
  execution = resolve_execution(cfg.optim, device);
  dit_cfg = cfg.model.resolved();
  nn::check_sdp_backend(cfg.optim.attention_backend, device, "optim.attention_backend");
  attention_backend = std::make_unique<nn::SdpBackendGuard>(cfg.optim.attention_backend);
  if (cfg.optim.cuda_graph && !device.is_cuda()) {
    throw std::invalid_argument("optim.cuda_graph needs a CUDA device, not " + device.str());
  }
  // A new run never replaces another run's checkpoints, config and logs.
  if (opts.write_files && !opts.resume) {
    if (const auto newest = latest_checkpoint(run_dir)) {
      throw std::invalid_argument(fmt::format(
          "run.dir {} already holds a run's checkpoints (newest: {}): give --resume to continue "
          "it, or another run.dir",
          run_dir.string(), newest->filename().string()));
    }
  }
  if (opts.write_files) std::filesystem::create_directories(run_dir / "samples");
  if (rank == 0 && opts.write_files) {
    if (const int64_t removed = remove_stale_temporaries(run_dir)) {
      spdlog::info("removed {} unfinished checkpoint file(s) of an earlier run", removed);
    }
    io::write_file_atomically(run_dir / "config.yaml",
                              [&](std::ostream& out) { out << to_yaml(cfg); });
  }
  make_dataset();
  step_flops = model::training_step_flops(
      dit_cfg, training_step_shape(cfg, dataset->get(0).caption.size(0)));
  // Before the model: a bad sampling or held-out file fails the run at once.
  if (opts.write_files) {
    make_sample_grid();
    make_validation();
  }
  at::manual_seed(cfg.run.seed);  // the model's initialisation
  dit = model::DiT(dit_cfg);
  nn::apply_execution(*dit, execution);
  dit->to(device);
  dit->train();
  if (world_size > 1) setup_distributed();
  if (!sharded) optimizer = make_adamw(named_parameters(), adamw_settings());
  if (cfg.optim.ema.enabled) {
    ema = std::make_unique<EMA>(cfg.optim.ema.smoothing, cfg.optim.ema.start_step);
  }
  restore();
  make_train_step();
  if (rank == 0 && opts.write_files) {  // logs, metrics and TensorBoard come from rank 0 only
    // A resumed run logs the steps after its checkpoint again: their earlier records go.
    std::optional<int64_t> purge_step;
    if (opts.resume) {
      purge_step = step + 1;
      keep_records_through(run_dir / "metrics.jsonl", step);
    }
    events = std::make_unique<EventWriter>(run_dir, purge_step);
    metrics = std::make_unique<MetricsLog>(run_dir / "metrics.jsonl");
  }
}

// Rendezvous, the same initial weights on every rank (rank 0's), and the gradient buckets.
void Trainer::State::setup_distributed() {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.dist.timeout_s * 1000));
  group = std::make_unique<ProcessGroup>(opts.launch, device, timeout);
  if (rank != 0) spdlog::set_level(spdlog::level::warn);
  spdlog::info("rank {} of {} ({} via {}, {}): {} backend", rank, world_size, device.str(),
               opts.launch.launcher, opts.launch.master_addr, group->backend_name());
  std::vector<at::Tensor> tensors = dit->parameters();
  for (const auto& b : dit->buffers()) tensors.push_back(b);
  {
    at::NoGradGuard no_grad;
    group->broadcast(tensors, "broadcast of the initial weights");
  }
  if (cfg.dist.zero_stage == 2) {
    sharded = std::make_unique<ShardedAdamW>(named_parameters(), adamw_settings(), *group,
                                             cfg.dist.bucket_mb);
  } else {
    buckets = std::make_unique<GradientBuckets>(dit->parameters(), *group, cfg.dist.bucket_mb);
  }
}

void Trainer::State::make_dataset() {
  const auto& d = cfg.data;
  if (d.kind == "builtin") {
    data::BuiltinShapesOptions o;
    o.num_samples = d.builtin_samples;
    o.palette = static_cast<int>(d.builtin_palette);
    o.image_size = d.builtin_image_size;
    o.caption_len = d.builtin_caption_len;
    o.caption_channels = d.builtin_caption_channels;
    o.seed = cfg.run.seed;
    auto shapes = std::make_unique<data::BuiltinShapes>(o);
    builtin = shapes.get();
    dataset = std::move(shapes);
  } else if (d.kind == "synthetic") {
    dataset = std::make_unique<data::SyntheticLatents>(
        synthetic_options(d, dit_cfg, d.synthetic_samples, cfg.run.seed));
  } else if (d.kind == "mds") {
    std::vector<std::filesystem::path> dirs(d.mds_dirs.begin(), d.mds_dirs.end());
    dataset = std::make_unique<data::MDSLatentDataset>(dirs, mds_options(d, dit_cfg));
  } else {
    dataset = std::make_unique<data::SafetensorsShards>(d.path, shards_options(d));
  }
  check_sample_shapes(*dataset, dit_cfg, "data");
  order = std::make_unique<data::SampleOrder>(dataset->size(), cfg.run.seed);
}

void Trainer::State::make_sample_grid() {
  const auto prompts = read_sample_prompts(cfg.sample);  // a missing file fails even unused
  if (!SampleGrid::configured(cfg)) {
    if (rank == 0) {
      spdlog::warn("no sample grids{}: on latent data they need sample.vae and the prompts' "
                   "caption embeddings (sample.text_encoder and sample.tokenizer, or "
                   "sample.caption_embeddings)",
                   prompts.empty() ? "" : fmt::format(" of the {} prompts", prompts.size()));
    }
    return;
  }
  samples = std::make_unique<SampleGrid>(cfg, dit_cfg, device, bf16, builtin);
  if (rank == 0 && !builtin && !cfg.sample.text_encoder.empty()) {
    save_caption_embeddings(run_dir / "samples" / "caption_embeddings.safetensors",
                            samples->caption_embeddings());
  }
}

// The held-out set: data.val_mds_dirs or data.val_path; built-in data the samples after the
// training ones (sample i is a function of (seed, i)); synthetic data a pool of another seed.
// The seed is data.val_seed when set, so that runs of several seeds share one held-out set.
void Trainer::State::make_validation() {
  const auto& d = cfg.data;
  if (cfg.run.eval_every == 0 && cfg.run.eval_steps.empty()) return;
  const uint64_t seed = d.val_seed >= 0 ? static_cast<uint64_t>(d.val_seed) : cfg.run.seed;
  ValidationOptions o;
  o.seed = seed;
  o.sigmas = d.val_sigmas.empty() ? default_validation_sigmas(cfg.edm) : d.val_sigmas;
  o.samples = d.val_samples;
  o.batch_size = micro_batch_size();
  o.bf16 = bf16;
  o.edm = cfg.edm;
  std::shared_ptr<const data::Dataset> set;
  if (d.kind == "builtin") {
    auto held = builtin->options();
    held.num_samples = d.builtin_samples + d.val_samples;
    held.seed = seed;
    set = std::make_shared<data::BuiltinShapes>(held);
    o.first = d.builtin_samples;
  } else if (d.kind == "synthetic") {
    set = std::make_shared<data::SyntheticLatents>(
        synthetic_options(d, dit_cfg, d.val_samples, data::mix_seed(seed, 1)));
  } else {
    set = util::in_context(d.kind == "mds" ? "data.val_mds_dirs" : "data.val_path", [&] {
      std::shared_ptr<const data::Dataset> files;
      if (d.kind == "mds") {
        std::vector<std::filesystem::path> dirs(d.val_mds_dirs.begin(), d.val_mds_dirs.end());
        files = std::make_shared<data::MDSLatentDataset>(dirs, mds_options(d, dit_cfg));
      } else {
        files = std::make_shared<data::SafetensorsShards>(d.val_path, shards_options(d));
      }
      check_sample_shapes(*files, dit_cfg, "the held-out set");
      return files;
    });
  }
  validation = std::make_unique<ValidationLoss>(set, o);
  const auto& r = cfg.run;
  spdlog::info("validation loss {}{}{} and at the end: {} held-out samples at sigma {:.4g}",
               r.eval_every > 0 ? fmt::format("every {} steps", r.eval_every) : "",
               r.eval_every > 0 && !r.eval_steps.empty() ? ", " : "",
               r.eval_steps.empty() ? "" : fmt::format("at steps {}", fmt::join(r.eval_steps, ", ")),
               validation->samples(), fmt::join(validation->sigmas(), ", "));
}

namespace {

// --resume takes the newest checkpoint that loads: one that a crash or a disk damaged (it fails
// its checksum or does not parse) is reported in one line and the one before it is tried.
std::pair<std::filesystem::path, LoadedCheckpoint> newest_intact_checkpoint(
    const std::filesystem::path& run_dir) {
  const auto found = list_checkpoints(run_dir);
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    try {
      return {it->second, load_checkpoint(it->second)};
    } catch (const std::exception& e) {
      spdlog::warn("--resume: {} (trying the checkpoint before it)", util::error_message(e));
    }
  }
  throw std::runtime_error(fmt::format("--resume: no checkpoint in {}/checkpoints{}",
                                       run_dir.string(), found.empty() ? "" : " loads"));
}

}  // namespace

model::StepShape training_step_shape(const TrainConfig& config, int64_t caption_tokens) {
  const auto& o = config.optim;
  model::StepShape shape;
  shape.batch = o.batch_size;
  shape.mask_ratio = o.mask_ratio;
  shape.caption_tokens = caption_tokens;
  shape.route_ratio = o.route.ratio;
  shape.route_start = o.route.start_block;
  shape.route_end = o.route.end_block;
  return shape;
}

int64_t configured_caption_tokens(const TrainConfig& config) {
  return config.data.kind == "builtin" ? config.data.builtin_caption_len
                                       : config.data.caption_tokens;
}

void Trainer::State::restore() {
  std::optional<std::filesystem::path> full;
  std::optional<LoadedCheckpoint> from;
  if (opts.resume) {
    auto [path, loaded] = newest_intact_checkpoint(run_dir);
    full = path;
    from = std::move(loaded);
  } else if (!cfg.optim.continue_from.empty()) {
    full = cfg.optim.continue_from;
    from = load_checkpoint(*full);
  }
  if (full) {
    auto& loaded = *from;
    io::load_state_dict(*dit, loaded.model);
    if (sharded) {
      sharded->load_moments(loaded.optimizer, loaded.optimizer_step);
    } else {
      restore_optimizer(*optimizer, dit, loaded);
    }
    if (ema && !loaded.ema.empty()) ema->load_state(loaded.ema);
    step = loaded.state.step;
    train_flops = loaded.state.train_flops;
    train_seconds = loaded.state.train_seconds;
    last_checkpoint = full->string();
    spdlog::info("continuing from {} at step {}", full->string(), step);
  } else if (!cfg.optim.init_from.empty()) {
    io::LoadOptions o;
    o.ignore_keys = cfg.optim.init_ignore_keys;
    io::load_state_dict(*dit, load_weights_any(cfg.optim.init_from), o);
    spdlog::info("initialised weights from {} (kept from this model: {})", cfg.optim.init_from,
                 fmt::join(o.ignore_keys, ", "));
  }
  if (sharded) sharded->refresh_from_parameters();
}

// The CPU side of micro-batch `key` = step * micro_batches + m: samples and their random draws.
MicroBatchInput Trainer::State::make_input(int64_t key) const {
  const int64_t m_step = key / micro_batches(), m = key % micro_batches();
  const auto positions =
      data::positions_for(m_step, cfg.optim.batch_size, rank, world_size, micro_batch_size(), m);
  auto batch = data::collate(*dataset, order->indices_at(positions), positions);
  auto draws = draw_samples(cfg.run.seed, m_step, positions, batch.latents.sizes().slice(1),
                            dit_cfg.num_patches(), cfg.optim.caption_drop_prob);
  MicroBatchInput input{std::move(batch), std::move(draws)};
  if (device.is_cuda()) {
    // Page-locked here, on the prefetch thread, so that the copies to the GPU do not block.
    for (at::Tensor* t : input.tensors()) *t = t->pin_memory();
  }
  return input;
}

void Trainer::State::make_train_step() {
  const auto& o = cfg.optim;
  TrainStepOptions so;
  so.device = device;
  so.batch_size = o.batch_size;
  so.micro_batches = micro_batches();
  so.mask_ratio = o.mask_ratio;
  so.route_ratio = o.route.ratio;
  so.route_start = o.route.start_block;
  so.route_end = o.route.end_block;
  so.clip_norm = o.clip_norm;
  so.bf16 = bf16;
  so.cuda_graph = o.cuda_graph;
  so.edm = cfg.edm;
  train_step = std::make_unique<TrainStep>(
      dit, TrainStepOptimizer{optimizer.get(), sharded.get(), buckets.get()}, so);
}

// The global batch's loss (each rank's part is already divided by the global batch size) and
// whether any rank got a stop signal, in one all-reduce so that every rank decides the same.
double Trainer::State::agree_on_loss_and_stop(double loss) {
  stop = g_stop_signal != 0;
  if (!group) return loss;
  auto values = at::tensor({loss, stop ? 1.0 : 0.0}, at::kDouble).to(device);  // NCCL: on the GPU
  group->all_reduce(values, "all-reduce of the loss");
  stop = values[1].item<double>() > 0;
  return values[0].item<double>();
}

double Trainer::State::train_one_step() {
  if (!prefetch) {
    prefetch = std::make_unique<data::Prefetcher<MicroBatchInput>>(
        [this](int64_t key) { return make_input(key); }, step * micro_batches(),
        /*depth=*/std::max<int64_t>(2, micro_batches()));
  }
  set_learning_rate(step_optimizer(), lr_at(step));
  // A graphed step updates the weights before its loss is read; a non-finite loss stops the run
  // either way, with the last checkpoint intact.
  double loss = 0;
  auto check = [&](const at::Tensor& step_loss) {
    loss = agree_on_loss_and_stop(step_loss.item<double>());
    if (!std::isfinite(loss)) {
      throw NonFiniteLoss(fmt::format("loss is {} at step {}; stopping. Last good checkpoint: {}",
                                      loss, step + 1, last_checkpoint));
    }
  };
  auto result = train_step->run(
      [&](int64_t m) { return prefetch->take(step * micro_batches() + m); }, check);
  grad_norm = result.grad_norm;
  ++step;
  if (ema) ema->update(*dit, step);
  return loss;
}

// Rank 0 writes: every rank holds the same weights, and the same AdamW moments unless they are
// sharded (then all ranks gather them first). The others wait at a barrier so that no rank runs
// ahead of a checkpoint it may have to resume from.
void Trainer::State::save(bool final) {
  if (!opts.write_files) return;
  const auto path = checkpoint_path(run_dir, step);
  int64_t optimizer_step = 0;
  io::TensorMap moments;
  if (sharded) {
    moments = sharded->gather_moments(optimizer_step);
  } else if (rank == 0) {
    moments = adamw_moments(*optimizer, dit, optimizer_step);
  }
  if (rank == 0) {
    save_checkpoint(path, dit, moments, optimizer_step, ema.get(),
                    {step, step * cfg.optim.batch_size, cfg.run.seed, to_yaml(cfg), train_flops,
                     train_seconds});
    prune_checkpoints(run_dir, cfg.run.keep_checkpoints);
    if (final) spdlog::info("checkpoint {}", path.string());
  }
  if (group) group->barrier("barrier after checkpoint " + path.string());
  last_checkpoint = path.string();
}

void Trainer::State::log_progress(double loss, double images_per_s, double eta_s) {
  const auto& o = cfg.optim;
  const double lr = lr_at(step - 1);  // of the update just made
  if (rank != 0) return;
  const double norm = grad_norm.item<double>();  // read only when logged: no wait in the step
  // On a GPU, the most memory the run's tensors have held so far (the sample grids included):
  // how close the run is to running out.
  const double peak_gib = util::peak_memory_bytes(device) / double(1 << 30);
  const std::string memory = device.is_cuda() ? fmt::format(" | peak {:.1f} GiB", peak_gib) : "";
  spdlog::info("step {}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.1f} img/s{} | ETA {}",
               step, o.steps, loss, lr, norm, images_per_s, memory, util::format_duration(eta_s));
  if (!metrics) return;  // TrainerOptions::write_files false
  std::vector<std::pair<std::string, double>> values{{"loss", loss},
                                                     {"lr", lr},
                                                     {"grad_norm", norm},
                                                     {"images_per_s", images_per_s},
                                                     {"train_flops", train_flops},
                                                     {"train_seconds", train_seconds}};
  if (device.is_cuda()) {
    values.emplace_back("peak_memory_gib", peak_gib);
    events->add_scalar("train/peak_memory_gib", peak_gib, step);
  }
  metrics->write(step, values);
  events->add_scalar("train/loss", loss, step);
  events->add_scalar("train/flops", train_flops, step);
  events->add_scalar("train/lr", lr, step);
  events->add_scalar("train/grad_norm", norm, step);
  events->add_scalar("train/images_per_s", images_per_s, step);
}

// The sample grid of this step with the EMA weights when there are any (else the raw ones):
// samples/step-N.png, a TensorBoard image, and on built-in data the prompt match (returned).
std::optional<data::PromptMatch> Trainer::State::sample_grid() {
  if (!samples || !opts.write_files) return std::nullopt;
  const auto start = std::chrono::steady_clock::now();
  std::optional<EMAWeightsInPlace> ema_weights;
  if (ema && ema->active()) ema_weights.emplace(*dit, *ema);
  const auto result = samples->render(dit, group.get(), rank, world_size);
  ema_weights.reset();
  if (rank != 0) return std::nullopt;
  // Rank 0 has gathered every image: the grid took this long on all ranks.
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto n = result.images.size(0);
  // Small images are enlarged (nearest neighbour) so the grid is readable.
  const int64_t zoom = std::max<int64_t>(1, 64 / result.images.size(-1));
  const auto shown = result.images.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3);
  const auto grid = io::make_grid(shown, static_cast<int64_t>(std::ceil(std::sqrt(double(n)))));
  const auto path = run_dir / "samples" / fmt::format("step-{:08d}.png", step);
  io::write_png(path, grid);
  events->add_image("samples", grid, step);
  events->add_scalar("samples/seconds", seconds, step);
  if (!result.prompt_match) {
    metrics->write(step, {{"sample_seconds", seconds}});
    spdlog::info("samples: {} prompts in {:.3g} s, grid {}", n, seconds, path.string());
    return std::nullopt;
  }
  const data::PromptMatch& match = *result.prompt_match;
  events->add_scalar("samples/color_match", match.color, step);
  events->add_scalar("samples/shape_match", match.shape, step);
  events->add_scalar("samples/prompt_match", match.both, step);
  metrics->write(step, {{"sample_seconds", seconds},
                        {"color_match", match.color},
                        {"shape_match", match.shape},
                        {"prompt_match", match.both}});
  const auto chance = data::chance(static_cast<int>(cfg.data.builtin_palette));
  spdlog::info(
      "samples: over {} prompts in {:.3g} s, colours match {:.1f}% (chance {:.1f}%), shape "
      "{:.1f}% (chance {:.1f}%), both {:.1f}% (chance {:.1f}%), grid {}",
      n, seconds, 100 * match.color, 100 * chance.color, 100 * match.shape, 100 * chance.shape,
      100 * match.both, 100 * chance.both, path.string());
  return match;
}

// The held-out loss with the raw weights, and with the EMA weights once they exist.
void Trainer::State::validation_losses() {
  if (!validation) return;
  log_validation("val", validation->evaluate(dit, device, group.get(), rank, world_size));
  if (ema && ema->active()) {
    EMAWeightsInPlace ema_weights(*dit, *ema);
    log_validation("val_ema", validation->evaluate(dit, device, group.get(), rank, world_size));
  }
}

void Trainer::State::log_validation(const std::string& name, const ValidationResult& result) {
  if (rank != 0) return;
  std::vector<std::pair<std::string, double>> values{
      {name + "_loss", result.loss}, {"train_flops", train_flops}, {"train_seconds", train_seconds}};
  events->add_scalar(name + "/loss", result.loss, step);
  const auto& sigmas = validation->sigmas();
  std::vector<std::string> shown;
  for (std::size_t s = 0; s < sigmas.size(); ++s) {
    const std::string level = fmt::format("sigma_{:.4g}", sigmas[s]);
    values.emplace_back(fmt::format("{}_loss_{}", name, level), result.per_sigma[s]);
    events->add_scalar(fmt::format("{}/loss_{}", name, level), result.per_sigma[s], step);
    shown.push_back(fmt::format("{:.4f}", result.per_sigma[s]));
  }
  metrics->write(step, values);
  spdlog::info("step {} | {} loss {:.4f} | per sigma {}", step, name, result.loss,
               fmt::join(shown, " "));
}

TrainResult Trainer::run() {
  auto& s = *s_;
  StopSignals signals;
  TrainResult result;
  const int64_t first = s.step;
  const int64_t end = s.opts.max_steps > 0 ? std::min(s.cfg.optim.steps, first + s.opts.max_steps)
                                           : s.cfg.optim.steps;
  auto window_start = std::chrono::steady_clock::now();
  int64_t window_steps = 0;
  double window_loss = 0;
  while (s.step < end) {
    const auto step_start = std::chrono::steady_clock::now();
    const double loss = s.train_one_step();
    s.train_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    s.train_flops += s.step_flops;
    result.losses.push_back(loss);
    window_loss += loss;
    ++window_steps;
    if (s.opts.on_step) s.opts.on_step(s.step, loss);
    const bool last = s.step == s.cfg.optim.steps;
    if (s.step % s.cfg.run.log_every == 0 || last || s.step == first + 1) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const double per_step = secs / static_cast<double>(window_steps);
      s.log_progress(window_loss / window_steps,
                     static_cast<double>(s.cfg.optim.batch_size) / per_step,
                     per_step * static_cast<double>(s.cfg.optim.steps - s.step));
      window_start = std::chrono::steady_clock::now();
      window_steps = 0;
      window_loss = 0;
    }
    if (s.stop_requested()) {
      s.save(/*final=*/true);
      spdlog::info("stopped by signal {} at step {}: checkpoint written", g_stop_signal.load(),
                   s.step);
      result.stopped_by_signal = true;
      result.final_step = s.step;
      return result;
    }
    if (s.cfg.run.checkpoint_every > 0 && s.step % s.cfg.run.checkpoint_every == 0 && !last) {
      s.save(/*final=*/false);
    }
    // The progress window's throughput leaves the validation and the samples out.
    const auto evaluation_start = std::chrono::steady_clock::now();
    if (s.evaluates_at(s.step) && !last) {
      s.validation_losses();
    }
    if (s.cfg.run.sample_every > 0 && s.step % s.cfg.run.sample_every == 0 && !last) {
      s.sample_grid();
    }
    window_start += std::chrono::steady_clock::now() - evaluation_start;
  }
  if (s.step > first || (s.opts.write_files && !latest_checkpoint(s.run_dir))) {
    s.save(/*final=*/true);  // nothing without write_files
  }
  s.validation_losses();
  result.prompt_match = s.sample_grid();
  result.final_step = s.step;
  return result;
}

}  // namespace microdit::train
