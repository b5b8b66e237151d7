// The user's whole path in one test, on the CPU with tiny random encoders: images + captions ->
// microdit-prepare (two MDS directories and a validation one) -> a masked stage under torchrun
// with 2 processes (Gloo), sample grids and validation loss on -> an unmasked stage from its
// weights, stopped at a known step and resumed, bit-equal to the uninterrupted run ->
// microdit-sample from the final checkpoint -> microdit-eval (FID with the random Inception
// stand-in, CLIP score with the random open_clip model). Asserts on every artefact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/io/png.h"
#include "microdit/io/safetensors.h"
#include "microdit/train/checkpoint.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

const fs::path kData = test::source_dir() / "tests" / "data";

// Runs `command`, its output into `log`; returns the exit status.
int run(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void make_images(const fs::path& dir, int first, int count) {
  fs::create_directories(dir);
  for (int i = first; i < first + count; ++i) {
    at::manual_seed(100 + i);
    const auto image = at::randint(0, 256, {16, 16, 3}, at::kByte);
    const auto stem = dir / ("img" + std::to_string(i));
    test::write_bytes(fs::path(stem).replace_extension(".png"), io::encode_png(image));
    test::write_bytes(fs::path(stem).replace_extension(".txt"),
                      "a photo of thing " + std::to_string(i));
  }
}

class EndToEnd : public testing::Test {
 protected:
  void SetUp() override { files_ = test::tiny_encoder_files(dir_.path / "encoders"); }

  std::string encoder_flags() const {
    return " --vae " + files_.vae.string() + " --text-encoder " + files_.text_encoder.string() +
           " --text-config " + files_.text_config.string() + " --tokenizer " +
           files_.tokenizer.string();
  }
  void prepare(const fs::path& images, const fs::path& out) const {
    const fs::path log = dir_.path / "prepare.log";
    ASSERT_EQ(run(test::tool("microdit-prepare") + " --out " + out.string() + encoder_flags() +
                      " --resolutions 16 --batch-size 4 " + images.string(),
                  log),
              0)
        << test::read_bytes(log);
    ASSERT_TRUE(fs::exists(out / "index.json"));
  }
  // A stage's config file: the tiny latent model on the prepared data, samples and validation.
  fs::path config(const std::string& name, const std::string& optim) const {
    const fs::path path = dir_.path / (name + ".yaml");
    test::write_bytes(path, "run: {dir: " + (dir_.path / name).string() +
                                ", device: cpu, log_every: 1, checkpoint_every: 2, "
                                "keep_checkpoints: 10, sample_every: 2, eval_every: 2}\n" +
                                test::tiny_latent_model_yaml() + "optim: {" + optim + "}\n" +
                                "data: {kind: mds, mds_dirs: [" + (dir_.path / "mds_a").string() +
                                ", " + (dir_.path / "mds_b").string() +
                                "], resolution: 16, caption_tokens: 77, val_mds_dirs: [" +
                                (dir_.path / "mds_val").string() + "], val_samples: 4}\n" +
                                "sample: {steps: 2, prompts: [a red thing, a blue thing], "
                                "vae: " + files_.vae.string() +
                                ", text_encoder: " + files_.text_encoder.string() +
                                ", text_config: " + files_.text_config.string() +
                                ", tokenizer: " + files_.tokenizer.string() + "}\n");
    return path;
  }
  int train(const fs::path& config, const std::string& extra, const std::string& log_name) const {
    const fs::path log = dir_.path / log_name;
    const int status = run(test::tool("microdit-train") + " --config " + config.string() + extra, log);
    if (status != 0) ADD_FAILURE() << test::read_bytes(log);
    return status;
  }

  test::TempDir dir_{"end-to-end"};
  encoders::EncoderFiles files_;
};

TEST_F(EndToEnd, PrepareTrainChainResumeSampleEvaluate) {
  // 1. Images and captions -> MDS latents (two training directories, one held out).
  make_images(dir_.path / "images_a", 0, 8);
  make_images(dir_.path / "images_b", 8, 8);
  make_images(dir_.path / "images_val", 16, 4);
  prepare(dir_.path / "images_a", dir_.path / "mds_a");
  prepare(dir_.path / "images_b", dir_.path / "mds_b");
  prepare(dir_.path / "images_val", dir_.path / "mds_val");

  // 2. A masked stage, two processes under torchrun on Gloo.
  const fs::path masked = config("masked", "steps: 4, batch_size: 4, lr: 0.001, mask_ratio: 0.5");
  const fs::path log = dir_.path / "masked.log";
  ASSERT_EQ(run("OMP_NUM_THREADS=1 python3 -m torch.distributed.run --nproc-per-node 2 "
                "--master-port " + std::to_string(test::free_port()) +
                    " --no-python " + test::tool("microdit-train") + " --config " + masked.string(),
                log),
            0)
      << test::read_bytes(log);
  const fs::path masked_dir = dir_.path / "masked";
  const fs::path stage_one = train::checkpoint_path(masked_dir, 4);
  ASSERT_TRUE(fs::exists(stage_one));
  EXPECT_TRUE(fs::exists(masked_dir / "samples" / "step-00000002.png"));
  EXPECT_TRUE(fs::exists(masked_dir / "samples" / "step-00000004.png"));
  int val_records = 0;
  for (const auto& record : test::metrics_records(masked_dir)) {
    if (!record.contains("val_loss")) continue;
    ++val_records;
    EXPECT_TRUE(std::isfinite(record.at("val_loss").get<double>())) << record.dump();
  }
  EXPECT_EQ(val_records, 2);  // steps 2 and 4
  const fs::path tf_log = dir_.path / "tfevents.log";
  EXPECT_EQ(run("python3 " + (test::source_dir() / "scripts" / "check_tfevents.py").string() +
                    " " + masked_dir.string(),
                tf_log),
            0)
      << test::read_bytes(tf_log);
  EXPECT_NE(test::read_bytes(tf_log).find("samples"), std::string::npos) << test::read_bytes(tf_log);

  // 3. An unmasked stage from the masked stage's weights: uninterrupted, and stopped at step 3
  //    then resumed. Constant learning rate, so the first run's length does not change a step.
  const std::string unmasked = "steps: 6, batch_size: 4, lr: 0.0005, mask_ratio: 0.0, "
                               "schedule: constant, init_from: " + stage_one.string();
  const fs::path whole = config("whole", unmasked);
  ASSERT_EQ(train(whole, "", "whole.log"), 0);
  const fs::path cut = config("cut", unmasked);
  ASSERT_EQ(train(cut, " --set optim.steps=3", "cut.log"), 0);
  ASSERT_EQ(train(cut, " --resume", "resumed.log"), 0);
  const auto a = io::load_safetensors(train::checkpoint_path(dir_.path / "whole", 6));
  const auto b = io::load_safetensors(train::checkpoint_path(dir_.path / "cut", 6));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) {
    ASSERT_TRUE(b.contains(name)) << name;
    EXPECT_TRUE(at::equal(tensor, b.at(name))) << name << " differs after the resume";
  }

  // 4. Samples from the final checkpoint.
  const fs::path prompts = dir_.path / "prompts.txt";
  test::write_bytes(prompts, "a photo of thing 1\na photo of thing 2\n");
  const fs::path samples = dir_.path / "samples";
  const fs::path sample_log = dir_.path / "sample.log";
  ASSERT_EQ(run(test::tool("microdit-sample") + " --checkpoint " +
                    train::checkpoint_path(dir_.path / "whole", 6).string() + encoder_flags() +
                    " --prompts " + prompts.string() + " --steps 2 --out " + samples.string(),
                sample_log),
            0)
      << test::read_bytes(sample_log);
  for (const char* name : {"00000.png", "00001.png", "grid.png"}) {
    EXPECT_TRUE(fs::exists(samples / name)) << name;
  }
  const fs::path generated = dir_.path / "generated";  // the images without the grid
  fs::create_directories(generated);
  for (const char* name : {"00000.png", "00001.png"}) fs::copy_file(samples / name, generated / name);

  // 5. FID against the training images and the CLIP score of each sample with its prompt.
  const fs::path scores = dir_.path / "scores.json";
  const fs::path eval_log = dir_.path / "eval.log";
  ASSERT_EQ(run(test::tool("microdit-eval") + " --generated " + generated.string() +
                    " --captions " + prompts.string() + " --real " +
                    (dir_.path / "images_a").string() + " --real-size 16 --inception " +
                    (kData / "fid" / "clean_inception_random.pt").string() + " --clip-open-clip " +
                    (kData / "clip_score" / "open_clip" / "open_clip_config.json").string() +
                    " --clip-weights " +
                    (kData / "clip_score" / "open_clip" / "open_clip_model.safetensors").string() +
                    " --clip-vocab " + files_.tokenizer.string() + " --out " + scores.string(),
                eval_log),
            0)
      << test::read_bytes(eval_log);
  const auto result = nlohmann::json::parse(test::read_bytes(scores));
  EXPECT_TRUE(std::isfinite(result.at("fid").get<double>())) << result.dump();
  EXPECT_TRUE(std::isfinite(result.at("clip_score").get<double>())) << result.dump();
}

}  // namespace
}  // namespace microdit
