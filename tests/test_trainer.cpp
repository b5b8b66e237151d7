// The training loop end to end on tiny models: learning, exact resume, SIGTERM, stage chaining,
// micro-batch split invariance, a non-finite loss, and the run directory's files.
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/model/pos_embed.h"
#include "microdit/nn/execution.h"
#include "microdit/train/checkpoint.h"
#include "microdit/train/config.h"
#include "microdit/train/tensorboard.h"
#include "microdit/train/trainer.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

// An empty directory for one run, removed again when the test program exits.
fs::path fresh_dir(const std::string& name) {
  auto dir =
      fs::temp_directory_path() / ("microdit_trainer_" + name + "_" + std::to_string(::getpid()));
  test::remove_tree(dir);
  static std::vector<fs::path> made;
  if (made.empty()) {
    std::atexit([] {
      for (const auto& d : made) test::remove_tree(d);
    });
  }
  made.push_back(dir);
  return dir;
}

// A tiny model on the built-in data (8x8 RGB), CPU, constant lr, logs quiet.
train::TrainConfig tiny(const fs::path& dir, int64_t steps) {
  return train::parse_train_config(test::tiny_builtin_train_yaml(dir, steps));
}

TEST(Trainer, OverfittingOneBatchLowersTheLoss) {
  auto c = tiny(fresh_dir("overfit"), 100);
  c.data.builtin_samples = 8;  // every step sees the same 8 samples
  c.optim.mask_ratio = 0;
  c.optim.caption_drop_prob = 0;
  c.optim.lr = 3e-3;
  const auto r = train::Trainer(c).run();
  ASSERT_EQ(r.losses.size(), 100u);
  // The noise level is drawn anew every step, so compare averages over ten steps.
  const double first = std::accumulate(r.losses.begin(), r.losses.begin() + 10, 0.0) / 10;
  const double last = std::accumulate(r.losses.end() - 10, r.losses.end(), 0.0) / 10;
  EXPECT_LT(last, 0.75 * first) << "first " << first << " last " << last;
}

TEST(Trainer, ResumeContinuesTheLossSequenceExactly) {
  const auto full = train::Trainer(tiny(fresh_dir("full"), 6)).run();
  const auto dir = fresh_dir("resumed");
  train::Trainer(tiny(dir, 3)).run();
  ASSERT_TRUE(train::latest_checkpoint(dir).has_value());
  const auto rest = train::Trainer(tiny(dir, 6), {/*resume=*/true, {}}).run();
  ASSERT_EQ(rest.losses.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rest.losses[i], full.losses[3 + i]) << "step " << 4 + i;
}

TEST(Trainer, SigtermWritesACheckpointAndResumesExactly) {
  const auto full = train::Trainer(tiny(fresh_dir("full2"), 5)).run();
  const auto dir = fresh_dir("sigterm");
  train::TrainerOptions o;
  o.on_step = [](int64_t step, double) {
    if (step == 2) std::raise(SIGTERM);
  };
  const auto stopped = train::Trainer(tiny(dir, 5), o).run();
  EXPECT_TRUE(stopped.stopped_by_signal);
  EXPECT_EQ(stopped.final_step, 2);
  ASSERT_TRUE(fs::exists(train::checkpoint_path(dir, 2)));
  const auto rest = train::Trainer(tiny(dir, 5), {true, {}}).run();
  ASSERT_EQ(rest.losses.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rest.losses[i], full.losses[2 + i]);
}

// The steps and value names of every metrics.jsonl record, in file order.
std::vector<std::string> metric_records(const fs::path& path) {
  std::vector<std::string> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::string keys = line.substr(0, line.find(','));
    for (std::size_t at = line.find(",\""); at != std::string::npos; at = line.find(",\"", at + 1)) {
      keys += " " + line.substr(at + 2, line.find('"', at + 2) - at - 2);
    }
    records.push_back(keys);
  }
  return records;
}

// What `kill -9` during a checkpoint write leaves (the checkpoint's temporary file, records of the
// steps after the last checkpoint, a record cut short), and the newest checkpoint damaged on disk.
TEST(Trainer, ResumeAfterACrashCleansUpAndFallsBackToAnIntactCheckpoint) {
  const auto settings = [](const fs::path& dir, int64_t steps) {
    auto c = tiny(dir, steps);
    c.run.checkpoint_every = 2;
    c.run.keep_checkpoints = 10;
    c.run.log_every = 1;
    return c;
  };
  const auto uninterrupted_dir = fresh_dir("uninterrupted");
  const auto full = train::Trainer(settings(uninterrupted_dir, 8)).run();
  const auto dir = fresh_dir("crashed");
  train::Trainer(settings(dir, 6)).run();  // checkpoints at steps 2, 4 and 6
  {
    std::ofstream metrics(dir / "metrics.jsonl", std::ios::app);
    metrics << "{\"step\":7,\"loss\":1.5}\n{\"step\":8,\"loss\":1.5}\n{\"step\":9,\"lo";
  }
  const fs::path temporary = dir / "checkpoints" / "step-00000008.safetensors.tmp.4242";
  std::ofstream(temporary) << "the first bytes of a checkpoint";
  {
    const fs::path newest = train::checkpoint_path(dir, 6);
    std::fstream file(newest, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(-1, std::ios::end);
    const char last = static_cast<char>(file.get() ^ 0x01);  // a flipped bit in the data
    file.seekp(-1, std::ios::end);
    file.put(last);
  }
  EXPECT_TRUE(test::throws_with([&] { train::load_checkpoint(train::checkpoint_path(dir, 6)); },
                                train::checkpoint_path(dir, 6).string() + ": the data does not "
                                "match the checksum", {}));

  const auto rest = train::Trainer(settings(dir, 8), {/*resume=*/true, {}}).run();
  ASSERT_EQ(rest.losses.size(), 4u);  // from step 4: the checkpoint of step 6 was refused
  for (int i = 0; i < 4; ++i) EXPECT_EQ(rest.losses[i], full.losses[4 + i]) << "step " << 5 + i;
  EXPECT_FALSE(fs::exists(temporary));
  EXPECT_EQ(metric_records(dir / "metrics.jsonl"),
            metric_records(uninterrupted_dir / "metrics.jsonl"));
  // The resumed run's event file tells TensorBoard to drop what the earlier file logged from
  // step 5 on: Event{step = 5, session_log = {status = START}}.
  int purges = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.path().filename().string().starts_with("events.out.tfevents.")) continue;
    for (const auto& record : train::read_tfevents_records(entry.path())) {
      purges += record.ends_with(std::string("\x10\x05\x3a\x02\x08\x01", 6)) ? 1 : 0;
    }
  }
  EXPECT_EQ(purges, 1);
}

TEST(Trainer, ResumeWithoutACheckpointIsAnError) {
  EXPECT_THROW(train::Trainer(tiny(fresh_dir("nockpt"), 2), {true, {}}), std::runtime_error);
}

// A new run into the directory of another one is refused before anything there changes.
TEST(Trainer, ANewRunDoesNotReplaceAnotherRunsCheckpoints) {
  const auto dir = fresh_dir("taken");
  train::Trainer(tiny(dir, 2)).run();
  const fs::path newest = dir / "checkpoints" / "step-00000002.safetensors";
  const std::string checkpoint = test::read_bytes(newest);
  const std::string config = test::read_bytes(dir / "config.yaml");
  ASSERT_FALSE(checkpoint.empty());
  auto other = tiny(dir, 2);
  other.optim.lr *= 2;
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { train::Trainer trainer(other); }, "run.dir " + dir.string(),
      {"already holds a run's checkpoints (newest: step-00000002.safetensors): give --resume"}));
  EXPECT_EQ(test::read_bytes(newest), checkpoint);
  EXPECT_EQ(test::read_bytes(dir / "config.yaml"), config);
}

TEST(Trainer, ContinueFromKeepsOptimizerStateAndCounter) {
  const auto a = fresh_dir("stage_a");
  train::Trainer(tiny(a, 4)).run();
  auto c = tiny(fresh_dir("stage_b"), 6);
  c.optim.continue_from = train::checkpoint_path(a, 4).string();
  c.optim.lr = 5e-4;
  c.optim.schedule = "constant";
  const auto r = train::Trainer(c).run();
  EXPECT_EQ(r.losses.size(), 2u);  // steps 5 and 6 of the global counter
  const auto loaded = train::load_checkpoint(train::checkpoint_path(c.run.dir, 6));
  EXPECT_EQ(loaded.state.step, 6);
  EXPECT_EQ(loaded.optimizer_step, 6);  // AdamW moments and bias correction carried over
}

// A routed stage (TREAD) chained into a deferred-masking one by optim.continue_from: the
// checkpoint serves both strategies, and the compute each logs (metrics.jsonl's train_flops, the
// checkpoint's) adds up per step from model/flops.h. run.eval_steps adds validation losses.
TEST(Trainer, RoutedStageChainsIntoAMaskedOneCountingItsFlops) {
  const auto a = fresh_dir("routed");
  auto routed = tiny(a, 3);
  routed.run.log_every = 1;
  routed.run.eval_steps = {2};
  routed.data.val_samples = 4;
  routed.optim.mask_ratio = 0;
  routed.optim.route = {0.5, 0, 1};
  const auto r = train::Trainer(routed).run();
  ASSERT_EQ(r.losses.size(), 3u);
  for (double loss : r.losses) EXPECT_TRUE(std::isfinite(loss));
  const auto dit = routed.model.resolved();
  const double per_routed = model::training_step_flops(dit, train::training_step_shape(routed, 8));
  auto unmasked = routed;
  unmasked.optim.route.ratio = 0;
  EXPECT_LT(per_routed, model::training_step_flops(dit, train::training_step_shape(unmasked, 8)));

  std::vector<int64_t> validated;
  int64_t logged = 0;
  for (const auto& record : test::metrics_records(a)) {
    const auto step = record["step"].get<int64_t>();
    if (!record.contains("loss") && !record.contains("val_loss")) continue;  // the samples' record
    ASSERT_TRUE(record.contains("train_flops")) << record.dump();
    EXPECT_DOUBLE_EQ(record["train_flops"].get<double>(), step * per_routed) << record.dump();
    if (record.contains("loss")) ++logged;
    if (record.contains("val_loss")) validated.push_back(step);
  }
  EXPECT_EQ(logged, 3);
  EXPECT_EQ(validated, (std::vector<int64_t>{2, 3}));

  auto masked = tiny(fresh_dir("masked_after_routed"), 5);
  masked.optim.continue_from = train::checkpoint_path(a, 3).string();
  train::Trainer(masked).run();
  const double per_masked = model::training_step_flops(dit, train::training_step_shape(masked, 8));
  const auto loaded = train::load_checkpoint(train::checkpoint_path(masked.run.dir, 5));
  EXPECT_DOUBLE_EQ(loaded.state.train_flops, 3 * per_routed + 2 * per_masked);
  EXPECT_GT(loaded.state.train_seconds, 0);
}

// data.val_seed holds the held-out samples and their noise fixed across run seeds: the same
// weights (lr 0 from one checkpoint) score the same at seeds 5 and 6, and differently without it.
TEST(Trainer, ValidationSeedKeepsTheHeldOutSetAcrossRunSeeds) {
  const auto start = fresh_dir("val_seed_start");
  train::Trainer(tiny(start, 1)).run();
  auto val_loss = [&](const std::string& name, uint64_t seed, int64_t val_seed) {
    auto c = tiny(fresh_dir(name), 1);
    c.run.seed = seed;
    c.run.eval_every = 1;
    c.data.val_samples = 4;
    c.data.val_seed = val_seed;
    c.optim.lr = 0;
    c.optim.init_from = train::checkpoint_path(start, 1).string();
    train::Trainer(c).run();
    for (const auto& record : test::metrics_records(c.run.dir)) {
      if (record.contains("val_loss")) return record["val_loss"].get<double>();
    }
    ADD_FAILURE() << "no validation loss in " << c.run.dir;
    return 0.0;
  };
  const double five = val_loss("val_seed_5", 5, 0);
  EXPECT_EQ(val_loss("val_seed_6", 6, 0), five);
  EXPECT_NE(val_loss("val_seed_6_own", 6, -1), five);
}

TEST(Trainer, InitFromA256CheckpointAt512RecomputesPosEmbed) {
  const auto a = fresh_dir("init_a");
  train::Trainer(tiny(a, 2)).run();
  auto c = tiny(fresh_dir("init_b"), 1);
  c.model.dit.input_size = 16;  // twice the latent size, as 512 px after 256 px
  c.model.dit.pos_interp_scale = 2.0;
  c.data.builtin_image_size = 16;
  c.optim.init_from = train::checkpoint_path(a, 2).string();
  c.optim.lr = 0;  // keep the loaded weights unchanged through the step
  c.optim.weight_decay = 0;
  train::Trainer t(c);
  const auto before = train::load_checkpoint(train::checkpoint_path(a, 2)).model;
  const auto after = io::state_dict(*t.model());
  for (const auto& [name, tensor] : before) {
    if (name == "pos_embed") continue;
    EXPECT_TRUE(at::equal(tensor, after.at(name))) << name;
  }
  EXPECT_TRUE(at::equal(after.at("pos_embed"), model::sincos_pos_embed_2d(32, 8, 2.0, 8)));
}

TEST(Trainer, MicroBatchSplitDoesNotChangeLossOrGradients) {
  auto c = tiny(fresh_dir("split_a"), 1);
  c.optim.clip_norm = 0;
  c.optim.warmup_steps = 0;
  c.optim.schedule = "constant";
  train::Trainer one(c);
  const auto r1 = one.run();
  auto c2 = c;
  c2.run.dir = fresh_dir("split_b").string();
  c2.optim.micro_batch_size = 4;
  train::Trainer two(c2);
  const auto r2 = two.run();
  EXPECT_NEAR(r1.losses[0], r2.losses[0], 1e-6 * std::abs(r1.losses[0]));
  auto p1 = one.model()->named_parameters();
  auto p2 = two.model()->named_parameters();
  for (const auto& item : p1) {
    const auto& g1 = item.value().grad();
    const auto& g2 = p2[item.key()].grad();
    EXPECT_TRUE(at::allclose(g1, g2, 1e-4, 1e-7)) << item.key();
  }
}

// optim.execution fast changes how, not what: the same losses and last gradients within
// rounding. The trainer applies it to every module that has the choice (nn::HasExecution), and
// the fused operations round differently somewhere.
TEST(Trainer, FastExecutionFollowsThePlainRun) {
  auto reference = tiny(fresh_dir("plain"), 3);
  reference.optim.execution = "reference";
  train::Trainer plain(reference);
  const auto plain_run = plain.run();
  auto c = tiny(fresh_dir("fast"), 3);
  c.optim.execution = "fast";
  train::Trainer fast(c);
  EXPECT_TRUE(fast.execution().fast());
  EXPECT_FALSE(plain.execution().fast());
  const auto fast_run = fast.run();
  ASSERT_EQ(fast_run.losses.size(), plain_run.losses.size());
  for (std::size_t i = 0; i < plain_run.losses.size(); ++i) {
    EXPECT_NEAR(fast_run.losses[i], plain_run.losses[i], 1e-5 * std::abs(plain_run.losses[i]))
        << "step " << i + 1;
  }
  auto fast_params = fast.model()->named_parameters();
  bool any_rounding_apart = false;
  for (const auto& item : plain.model()->named_parameters()) {
    const auto& g = item.value().grad();
    const auto& g_fast = fast_params[item.key()].grad();
    EXPECT_TRUE(at::allclose(g_fast, g, 1e-4, 1e-7)) << item.key();
    any_rounding_apart = any_rounding_apart || !at::equal(g_fast, g);
  }
  int64_t with_choice = 0;
  for (const auto& module : fast.model()->modules()) {
    const auto* has = dynamic_cast<const nn::HasExecution*>(module.get());
    if (has == nullptr) continue;
    ++with_choice;
    EXPECT_TRUE(has->execution.fast()) << module->name();
  }
  EXPECT_GT(with_choice, 0);
  EXPECT_TRUE(any_rounding_apart) << "the fast path did not reach the model";
}

// data.kind synthetic: a model of a stage's shapes (4 latent channels, 77 caption tokens of its
// caption width) trains without data on disk, and the same seed gives the same run.
TEST(Trainer, TrainsAStageShapedModelOnSyntheticData) {
  auto config = [](const std::string& name) {
    return train::parse_train_config(R"(
run: {dir: )" + fresh_dir(name).string() + R"(, device: cpu, log_every: 1, seed: 4}
)" + test::tiny_latent_model_yaml() + R"(
optim: {steps: 3, batch_size: 4, micro_batch_size: 2, lr: 0.001, mask_ratio: 0.75,
        clip_norm: 0.25}
data: {kind: synthetic, synthetic_samples: 16}
)");
  };
  const auto a = train::Trainer(config("synthetic_a")).run();
  const auto b = train::Trainer(config("synthetic_b")).run();
  ASSERT_EQ(a.losses.size(), 3u);
  for (double loss : a.losses) EXPECT_TRUE(std::isfinite(loss));
  EXPECT_EQ(a.losses, b.losses);
}

// microdit-bench's trainer: nothing on disk, max_steps of the run, and the same losses as the
// run that writes its files (same schedule: optim.steps stays).
TEST(Trainer, WithoutFilesAndStoppedEarlyTrainsTheSameSteps) {
  auto c = tiny(fresh_dir("files"), 4);
  c.optim.schedule = "cosine_with_warmup";
  const auto written = train::Trainer(c).run();
  auto quiet = c;
  quiet.run.dir = (fresh_dir("no_files") / "run").string();
  train::TrainerOptions options;
  options.write_files = false;
  options.max_steps = 3;
  const auto r = train::Trainer(quiet, options).run();
  EXPECT_FALSE(fs::exists(quiet.run.dir));
  ASSERT_EQ(r.losses.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(r.losses[i], written.losses[i]) << "step " << i;
}

// optim.attention_backend holds for the trainer's life; a CUDA-only backend on the CPU is refused.
TEST(Trainer, AttentionBackendForTheRun) {
  auto c = tiny(fresh_dir("attention"), 1);
  c.optim.attention_backend = "math";
  {
    train::Trainer trainer(c);
    EXPECT_FALSE(at::globalContext().userEnabledFlashSDP());
    EXPECT_TRUE(at::globalContext().userEnabledMathSDP());
    trainer.run();
  }
  EXPECT_TRUE(at::globalContext().userEnabledFlashSDP());
  c.optim.attention_backend = "cudnn";
  try {
    train::Trainer refused(c);
    ADD_FAILURE() << "cudnn attention on the CPU was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(
        std::string(e.what()).find("optim.attention_backend: attention backend 'cudnn' needs CUDA"),
        std::string::npos)
        << e.what();
  }
}

TEST(Trainer, NonFiniteLossStopsNamingTheStep) {
  const auto shards = fresh_dir("nan_data");
  fs::create_directories(shards);
  auto latents = at::randn({8, 3, 8, 8});
  latents[5][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  io::save_safetensors(shards / "shard-0.safetensors",
                       {{"latents", latents}, {"caption_latents", at::randn({8, 8, 16})}});
  auto c = tiny(fresh_dir("nan_run"), 3);
  c.data.kind = "safetensors";
  c.data.path = shards.string();
  try {
    train::Trainer(c).run();
    FAIL() << "a NaN latent must stop the run";
  } catch (const train::NonFiniteLoss& e) {
    EXPECT_NE(std::string(e.what()).find("at step 1"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(train::latest_checkpoint(c.run.dir).has_value());
}

TEST(Trainer, RunDirectoryHoldsConfigMetricsEventsSamples) {
  auto c = tiny(fresh_dir("rundir"), 3);
  c.run.log_every = 1;
  const auto r = train::Trainer(c).run();
  const fs::path dir = c.run.dir;
  EXPECT_TRUE(fs::exists(dir / "config.yaml"));
  EXPECT_EQ(train::to_yaml(train::load_train_config(dir / "config.yaml")), train::to_yaml(c));
  EXPECT_TRUE(fs::exists(dir / "samples" / "step-00000003.png"));
  ASSERT_TRUE(r.prompt_match.has_value());
  EXPECT_GE(r.prompt_match->color, 0.0);
  const auto records = test::metrics_records(dir);
  ASSERT_EQ(records.size(), 4u);  // 3 steps + the sample record
  for (const auto& record : records) {
    EXPECT_FALSE(record.contains("peak_memory_gib")) << "a GPU's figure in a CPU run";
  }
  const io::Json& grid = records.back();
  EXPECT_EQ(grid.at("step").get<int64_t>(), 3);
  EXPECT_GT(grid.at("sample_seconds").get<double>(), 0.0);
  EXPECT_EQ(grid.at("color_match").get<double>(), r.prompt_match->color);
  int event_files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().find("tfevents") == std::string::npos) continue;
    ++event_files;
    // first record + 5 scalars x 3 steps + image, seconds, colour, shape and prompt match
    EXPECT_EQ(train::read_tfevents_records(entry.path()).size(), 1u + 15u + 5u);
  }
  EXPECT_EQ(event_files, 1);
}

// optim.cuda_graph: 2 eager steps, the capture at step 3, replays after. In float32 with TF32
// off and a cosine schedule (each replay must take its step's learning rate from the device),
// the losses, weights and AdamW state of a 6-step run follow the eager run's.
TEST(Trainer, CudaGraphStepsFollowTheEagerSteps_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  auto config = [](const std::string& name, bool graph) {
    auto c = tiny(fresh_dir(name), 6);
    c.run.device = "cuda";
    c.optim.precision = "fp32";
    c.optim.schedule = "cosine_with_warmup";
    c.optim.lr = 3e-3;
    c.optim.cuda_graph = graph;
    c.optim.execution = "reference";
    c.optim.batch_size = 8;
    c.optim.micro_batch_size = 4;  // two micro-batches accumulate inside the graph
    return c;
  };
  const auto eager_config = config("graph_eager", false), graph_config = config("graph", true);
  train::Trainer eager(eager_config), graphed(graph_config);
  const auto a = eager.run(), b = graphed.run();
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (std::size_t i = 0; i < a.losses.size(); ++i) {
    EXPECT_NEAR(b.losses[i], a.losses[i], 1e-4 * std::abs(a.losses[i])) << "step " << i + 1;
  }
  const auto ours = train::load_checkpoint(train::checkpoint_path(graph_config.run.dir, 6));
  const auto theirs = train::load_checkpoint(train::checkpoint_path(eager_config.run.dir, 6));
  // Relative to the reference's largest magnitude; a tensor that is all zeros there (a moment
  // whose gradients stayed zero) must be all zeros here too.
  auto apart = [](const at::Tensor& ours, const at::Tensor& ref) {
    return ref.abs().max().item<double>() == 0 ? ours.abs().max().item<double>()
                                               : test::max_relative(ours, ref);
  };
  for (const auto* maps : {&ours.model, &ours.optimizer}) {
    const auto& reference = maps == &ours.model ? theirs.model : theirs.optimizer;
    ASSERT_EQ(maps->size(), reference.size());
    for (const auto& [name, t] : reference) {
      ASSERT_TRUE(maps->contains(name)) << name;
      EXPECT_LT(apart(maps->at(name), t), 1e-4) << name;
    }
  }
  // The host step counts followed the replays: the checkpoint resumes with the right bias
  // corrections.
  EXPECT_EQ(ours.optimizer_step, 6);
  EXPECT_EQ(theirs.optimizer_step, 6);
}

TEST(Trainer, CudaGraphNeedsACudaDevice) {
  auto c = tiny(fresh_dir("graph_cpu"), 1);
  c.optim.cuda_graph = true;
  try {
    train::Trainer refused(c);
    ADD_FAILURE() << "optim.cuda_graph on the CPU was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "optim.cuda_graph needs a CUDA device, not cpu");
  }
}

}  // namespace
}  // namespace microdit

namespace microdit {
namespace {

// A short version of the built-in demo (configs/demo.yaml): it must learn to follow prompts.
TEST(Demo, ShortRunFollowsPrompts) {
  const auto dir = fresh_dir("demo");
  auto c =
      train::load_train_config(test::source_dir() / "configs" / "demo.yaml",
                               {"optim.steps=150", "optim.warmup_steps=20",
                                "run.dir=" + dir.string(), "run.device=cpu", "run.sample_every=0"});
  const auto r = train::Trainer(c).run();
  const double chance = 1.0 / (6 * 5);
  ASSERT_TRUE(r.prompt_match.has_value());
  EXPECT_GT(r.prompt_match->color, 5 * chance) << "colour match " << r.prompt_match->color;
  EXPECT_TRUE(fs::exists(dir / "samples" / "step-00000150.png"));
}

}  // namespace
}  // namespace microdit

namespace microdit {
namespace {

// Training reads the official MDS layout (a merged index over two writer folders).
TEST(Trainer, TrainsOnMDSShards) {
  const auto mds = test::source_dir() / "tests" / "data" / "mds" / "merged";
  auto c = train::parse_train_config(R"(
run: {dir: )" + fresh_dir("mds").string() +
                                     R"(, device: cpu, log_every: 1}
)" + test::mds_fixture_model_yaml() + R"(
optim: {steps: 3, batch_size: 4, lr: 0.001, mask_ratio: 0.5}
data: {kind: mds, mds_dirs: [)" + mds.string() +
                                     R"(], resolution: 256, caption_tokens: 7}
)");
  const auto r = train::Trainer(c).run();
  ASSERT_EQ(r.losses.size(), 3u);
  for (double loss : r.losses) EXPECT_TRUE(std::isfinite(loss));
  EXPECT_TRUE(fs::exists(train::checkpoint_path(c.run.dir, 3)));
}

TEST(Trainer, MDSLatentsOfAnotherShapeAreAClearError) {
  const auto mds = test::source_dir() / "tests" / "data" / "mds" / "merged";
  auto c = tiny(fresh_dir("mds_shape"), 1);
  c.data.kind = "mds";
  c.data.mds_dirs = {mds.string()};
  c.data.caption_tokens = 7;
  try {
    train::Trainer t(c);
    FAIL() << "8x8 RGB model on 4x4x4 latents must be rejected";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("latents"), std::string::npos) << e.what();
  }
}

// The trainer's GPU path (pinned prefetched batches, asynchronous copies, fused AdamW): in
// float32 with TF32 off it follows the CPU run step by step.
TEST(Trainer, CudaRunFollowsTheCpuRun_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  auto cpu = tiny(fresh_dir("cpu_ref"), 4);
  auto cuda = tiny(fresh_dir("cuda"), 4);
  cuda.run.device = "cuda";
  cuda.optim.precision = "fp32";
  cuda.optim.execution = "reference";  // the CPU's (auto is fast on CUDA)
  const auto a = train::Trainer(cpu).run(), b = train::Trainer(cuda).run();
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (std::size_t i = 0; i < a.losses.size(); ++i) {
    EXPECT_NEAR(b.losses[i], a.losses[i], 1e-4 * std::abs(a.losses[i])) << "step " << i + 1;
  }
  // Its progress records carry the peak GPU memory so far, which never falls.
  double peak = 0;
  int progress = 0;
  for (const auto& record : test::metrics_records(cuda.run.dir)) {
    if (!record.contains("loss")) continue;
    ++progress;
    const double now = record.at("peak_memory_gib").get<double>();
    EXPECT_GE(now, peak) << record.dump();
    peak = now;
  }
  EXPECT_GT(progress, 0);
  EXPECT_GT(peak, 0.0);
}

}  // namespace
}  // namespace microdit
