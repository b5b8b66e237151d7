// Sample grids and validation losses of a training run on latent (MDS) data, with the tiny random
// encoders of tests/data: the files a run writes (PNG grids, TensorBoard images and scalars, as
// TensorBoard's own reader sees them), the embeddings file that replaces the text tower, the
// validation loss's independence of batching, and the one-line errors for bad sampling and
// held-out inputs before the first step.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "microdit/data/builtin_shapes.h"
#include "microdit/data/mds.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/train/config.h"
#include "microdit/train/sample_grid.h"
#include "microdit/train/tensorboard.h"
#include "microdit/train/trainer.h"
#include "microdit/train/validation_loss.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

// `n` samples of random fp16 latents_16 (channels x size x size) and caption_latents (77, 32), as
// microdit-prepare writes them.
void write_latent_mds(const fs::path& dir, int64_t n, int64_t channels, int64_t size,
                      uint64_t seed) {
  data::MDSWriter writer(dir, {{"caption_latents", "bytes"}, {"latents_16", "bytes"}});
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto bytes = [](const at::Tensor& t) {
    const auto half = t.to(at::kHalf).contiguous();
    return std::string(static_cast<const char*>(half.data_ptr()), half.nbytes());
  };
  for (int64_t i = 0; i < n; ++i) {
    data::MDSSample sample;
    sample.set("caption_latents", bytes(at::randn({77, 32}, generator)));
    sample.set("latents_16", bytes(at::randn({channels, size, size}, generator)));
    writer.write(sample);
  }
  writer.finish();
}

class TrainingSamples : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("training_samples");
    files_ = test::tiny_encoder_files(dir_->path / "encoders");
    write_latent_mds(dir_->path / "train", 8, 4, 8, 1);
    write_latent_mds(dir_->path / "val", 6, 4, 8, 2);
  }
  static void TearDownTestSuite() { delete dir_; }

  // A tiny model on the MDS set with sample grids (the text tower) and validation losses every
  // two steps, the EMA from step 2.
  static std::string yaml(const fs::path& run, int64_t steps) {
    return R"(
run: {dir: )" + run.string() + R"(, device: cpu, log_every: 1000, checkpoint_every: 0,
      sample_every: 2, eval_every: 2}
)" + test::tiny_latent_model_yaml() + R"(
optim: {steps: )" + std::to_string(steps) + R"(, batch_size: 4, lr: 0.001, mask_ratio: 0.5,
        ema: {enabled: true, smoothing: 0.9, start_step: 2}}
data: {kind: mds, mds_dirs: [)" + (dir_->path / "train").string() + R"(], resolution: 16,
       val_mds_dirs: [)" + (dir_->path / "val").string() + R"(], val_samples: 5,
       val_sigmas: [0.5, 2.0]}
sample:
  steps: 2
  cfg: 2.0
  prompts: [a red square, "a photo of a cat", a green circle]
  vae: )" + files_.vae.string() + R"(
  text_encoder: )" + files_.text_encoder.string() + R"(
  text_config: )" + files_.text_config.string() + R"(
  tokenizer: )" + files_.tokenizer.string() + "\n";
  }

  static test::TempDir* dir_;
  static encoders::EncoderFiles files_;
};
test::TempDir* TrainingSamples::dir_ = nullptr;
encoders::EncoderFiles TrainingSamples::files_;

fs::path event_file(const fs::path& run) {
  for (const auto& entry : fs::directory_iterator(run)) {
    if (entry.path().filename().string().starts_with("events.out.tfevents")) return entry.path();
  }
  return {};
}

TEST_F(TrainingSamples, RunOnMDSWritesGridsTensorBoardImagesAndValidationLosses) {
  const fs::path run = dir_->path / "run";
  const auto config = train::parse_train_config(yaml(run, 4));
  const auto result = train::Trainer(config).run();
  ASSERT_EQ(result.final_step, 4);
  // Grids of 3 prompts at 16 px (8x8 latents, the tiny VAE's factor 2), enlarged 4 times.
  for (const char* name : {"step-00000002.png", "step-00000004.png"}) {
    const auto png = test::read_bytes(run / "samples" / name);
    ASSERT_GT(png.size(), 8u) << name;
    EXPECT_EQ(png.substr(1, 3), "PNG");
  }
  const auto embeddings = train::load_caption_embeddings(run / "samples" / "caption_embeddings.safetensors");
  EXPECT_EQ(embeddings.sizes(), (std::vector<int64_t>{3, 77, 32}));

  // Validation records at steps 2 and 4: raw weights at both, the EMA's once it has started.
  // A record of each grid's seconds at steps 2 and 4.
  std::map<int64_t, io::Json> val;
  std::vector<int64_t> grids;
  for (const auto& r : test::metrics_records(run)) {
    if (r.contains("val_loss")) val[r.at("step").get<int64_t>()] = r;
    if (r.contains("val_ema_loss")) val[-r.at("step").get<int64_t>()] = r;
    if (r.contains("sample_seconds")) {
      EXPECT_GT(r.at("sample_seconds").get<double>(), 0.0);
      grids.push_back(r.at("step").get<int64_t>());
    }
  }
  EXPECT_EQ(grids, (std::vector<int64_t>{2, 4}));
  ASSERT_TRUE(val.count(2) && val.count(4) && val.count(-2) && val.count(-4)) << val.size();
  const auto& at4 = val[4];
  const double low = at4.at("val_loss_sigma_0.5").get<double>();
  const double high = at4.at("val_loss_sigma_2").get<double>();
  EXPECT_NEAR(at4.at("val_loss").get<double>(), (low + high) / 2, 1e-12);
  EXPECT_NE(val[4].at("val_loss").get<double>(), val[-4].at("val_ema_loss").get<double>());

  // TensorBoard's own reader (the `tensorboard` package, where it is installed) sees the grids
  // and the scalars.
  const fs::path events = event_file(run);
  ASSERT_FALSE(events.empty());
  if (std::system("python3 -c 'import tensorboard' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "the tensorboard Python package is not installed (scripts/setup.sh)";
  }
  const fs::path log = dir_->path / "check_tfevents.txt";
  const std::string command = "python3 " + test::source_dir().string() +
                              "/scripts/check_tfevents.py " + run.string() +
                              " --expect-images 1 --expect-scalars 10 > " + log.string() + " 2>&1";
  const int rc = std::system(command.c_str());
  const std::string output = test::read_bytes(log);
  EXPECT_EQ(rc, 0) << output;
  for (const char* line : {"image samples step 2: 134x134", "image samples step 4: 134x134",
                           "scalar val/loss: 2 points", "scalar val/loss_sigma_0.5: 2 points",
                           "scalar val_ema/loss_sigma_2: 2 points", "scalar train/loss: "}) {
    EXPECT_NE(output.find(line), std::string::npos) << line << " not in:\n" << output;
  }
}

// A run without the text tower at hand takes the embeddings an earlier run wrote: the same grid.
TEST_F(TrainingSamples, CaptionEmbeddingsFileReplacesTheTextTower) {
  const fs::path first = dir_->path / "with_tower", second = dir_->path / "with_file";
  auto config = train::parse_train_config(yaml(first, 2));
  config.run.eval_every = 0;
  train::Trainer(config).run();
  config.run.dir = second.string();
  config.sample.text_encoder = config.sample.text_config = config.sample.tokenizer = "";
  config.sample.caption_embeddings =
      (first / "samples" / "caption_embeddings.safetensors").string();
  train::Trainer(config).run();
  const auto a = test::read_bytes(first / "samples" / "step-00000002.png");
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, test::read_bytes(second / "samples" / "step-00000002.png"));
}

// The trainer refuses `config` before its first step with one line naming `key`.
testing::AssertionResult refused_naming(const train::TrainConfig& config, const std::string& key,
                                        const std::string& piece) {
  train::TrainerOptions options;
  bool stepped = false;
  options.on_step = [&](int64_t, double) { stepped = true; };
  try {
    train::Trainer(config, options).run();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (stepped) return testing::AssertionFailure() << "failed after a step: " << message;
    if (message.find('\n') != std::string::npos) {
      return testing::AssertionFailure() << "more than one line: " << message;
    }
    if (!message.starts_with(key) || message.find(piece) == std::string::npos) {
      return testing::AssertionFailure() << "'" << message << "' does not start with " << key
                                         << " or lacks '" << piece << "'";
    }
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "accepted";
}

TEST_F(TrainingSamples, BadSamplingOrHeldOutInputIsOneLineBeforeTheFirstStep) {
  const auto good = train::parse_train_config(yaml(dir_->path / "bad", 2));
  {  // Text tower weights of another architecture than their config (one layer, config two).
    auto c = good;
    const fs::path config = dir_->path / "two_layers.json";
    test::write_bytes(config, R"({"quick_gelu": true, "text_cfg": {"context_length": 77, )"
                              R"("vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}})");
    c.sample.text_config = config.string();
    EXPECT_TRUE(refused_naming(c, "sample.text_encoder: ", "1"));
  }
  {  // A text tower whose width is not the model's caption width.
    auto c = good;
    c.model.dit.caption_channels = 16;
    c.data.mds_dirs = c.data.val_mds_dirs = {};  // the data would fail first
    c.data.kind = "synthetic";
    c.data.caption_tokens = 77;
    EXPECT_TRUE(refused_naming(c, "sample.text_encoder: ", "caption_channels is 16"));
  }
  {
    auto c = good;
    c.sample.prompts.clear();
    c.sample.prompts_file = (dir_->path / "no_such_prompts.txt").string();
    EXPECT_TRUE(refused_naming(c, "sample.prompts_file: ", "no_such_prompts.txt"));
  }
  {
    auto c = good;
    fs::create_directories(dir_->path / "empty_val");
    c.data.val_mds_dirs = {(dir_->path / "empty_val").string()};
    EXPECT_TRUE(refused_naming(c, "data.val_mds_dirs: ", "empty_val"));
  }
  {  // Held-out latents of 4x4 where the model takes 8x8.
    auto c = good;
    write_latent_mds(dir_->path / "val_4x4", 3, 4, 4, 3);
    c.data.val_mds_dirs = {(dir_->path / "val_4x4").string()};
    EXPECT_TRUE(refused_naming(c, "data.val_mds_dirs", "val_4x4"));
  }
  {  // An embeddings file with another number of rows than prompts.
    auto c = good;
    c.sample.text_encoder = c.sample.text_config = c.sample.tokenizer = "";
    const fs::path file = dir_->path / "two.safetensors";
    train::save_caption_embeddings(file, at::zeros({2, 77, 32}));
    c.sample.caption_embeddings = file.string();
    EXPECT_TRUE(refused_naming(c, "sample.caption_embeddings: ", "3 prompts"));
  }
}

// The validation loss of a model is the same however the held-out samples are batched.
TEST(ValidationLoss, DoesNotDependOnTheBatchSize) {
  data::BuiltinShapesOptions shapes;
  shapes.num_samples = 20;
  shapes.image_size = 8;
  shapes.palette = 3;
  shapes.caption_channels = 16;
  auto set = std::make_shared<data::BuiltinShapes>(shapes);
  auto config = train::parse_train_config(test::tiny_builtin_train_yaml("unused", 1));
  at::manual_seed(0);
  model::DiT dit(config.model.resolved());
  train::ValidationOptions o;
  o.sigmas = train::default_validation_sigmas(config.edm);
  o.samples = 7;
  o.first = 12;
  std::vector<train::ValidationResult> results;
  for (const int64_t batch : {1, 3, 7}) {
    o.batch_size = batch;
    results.push_back(train::ValidationLoss(set, o).evaluate(dit, at::kCPU, nullptr, 0, 1));
  }
  ASSERT_EQ(results[0].per_sigma.size(), 5u);
  for (const auto& r : results) {
    EXPECT_NEAR(r.loss, results[0].loss, 1e-6 * results[0].loss);
    for (std::size_t s = 0; s < 5; ++s) {
      EXPECT_NEAR(r.per_sigma[s], results[0].per_sigma[s], 1e-6 * results[0].per_sigma[s]);
    }
  }
  EXPECT_TRUE(dit->is_training()) << "the model's mode is restored";
}

TEST(ValidationLoss, DefaultSigmasAreQuantilesOfTheTrainingDistribution) {
  diffusion::EDMConfig edm;
  edm.P_mean = -0.6;
  edm.P_std = 1.2;
  const auto sigmas = train::default_validation_sigmas(edm);
  ASSERT_EQ(sigmas.size(), 5u);
  EXPECT_NEAR(sigmas[2], std::exp(-0.6), 1e-12);  // the median
  // P(ln sigma < ln s) for each: 0.1, 0.3, 0.5, 0.7, 0.9.
  for (std::size_t k = 0; k < 5; ++k) {
    const double z = (std::log(sigmas[k]) + 0.6) / 1.2;
    EXPECT_NEAR(0.5 * std::erfc(-z / std::sqrt(2.0)), 0.1 + 0.2 * static_cast<double>(k), 1e-12);
  }
  EXPECT_NE(train::validation_noise_seed(0, 1, 0.5), train::validation_noise_seed(0, 2, 0.5));
  EXPECT_NE(train::validation_noise_seed(0, 1, 0.5), train::validation_noise_seed(0, 1, 0.25));
}

}  // namespace
}  // namespace microdit
