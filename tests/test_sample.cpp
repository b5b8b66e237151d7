// microdit-sample end to end on the CPU: a tiny checkpoint written by the training code, the tiny
// encoders, images that depend on seed and index but not on the batch size, and bad input.
#include <gtest/gtest.h>

#include <algorithm>

#include <fmt/format.h>

#include <torch/cuda.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "microdit/diffusion/text_to_image.h"
#include "microdit/eval/coco_captions.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/train/checkpoint.h"
#include "microdit/train/config.h"
#include "microdit/train/optimizer.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

// A tiny model for 8x8x4 latents (16 px images through the tiny VAE) and 32-wide captions.
train::TrainConfig tiny_config() {
  return train::parse_train_config(test::tiny_latent_model_yaml() + R"(
data: {kind: mds, mds_dirs: [prepared], resolution: 16}
)");
}

class Sample : public testing::Test {
 protected:
  void SetUp() override {
    files_ = test::tiny_encoder_files(dir_.path / "clip");
    const auto cfg = tiny_config();
    at::manual_seed(3);
    model::DiT dit(cfg.model.resolved());
    {
      at::NoGradGuard no_grad;  // non-zero output layers, so the prompts matter
      for (auto& p : dit->parameters()) p.add_(at::randn_like(p) * 0.05);
    }
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& item : dit->named_parameters()) named.emplace_back(item.key(), item.value());
    auto optimizer = train::make_adamw(named, {});
    checkpoint_ = dir_.path / "step-1.safetensors";
    train::save_checkpoint(checkpoint_, dit, *optimizer, nullptr, {1, 8, 0, train::to_yaml(cfg)});
    io::save_safetensors(dir_.path / "plain.safetensors", io::state_dict(*dit));
  }

  // Runs the tool; returns its exit status, its output in *log.
  int sample(const std::string& args, std::string* log, const std::string& env = "") const {
    const auto log_file = dir_.path / "log.txt";
    const std::string command = env + " " + test::tool("microdit-sample") + " --vae " +
                                files_.vae.string() + " --text-encoder " +
                                files_.text_encoder.string() + " --text-config " +
                                files_.text_config.string() + " --tokenizer " +
                                files_.tokenizer.string() + " --steps 3 " + args + " > " +
                                log_file.string() + " 2>&1";
    const int status = std::system(command.c_str());
    *log = test::read_bytes(log_file);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // microdit-eval's flags for the random open_clip model of tests/data/clip_score.
  static std::string clip_flags() {
    const fs::path data = test::source_dir() / "tests" / "data";
    return " --clip-open-clip " +
           (data / "clip_score" / "open_clip" / "open_clip_config.json").string() +
           " --clip-weights " +
           (data / "clip_score" / "open_clip" / "open_clip_model.safetensors").string() +
           " --clip-vocab " + (data / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").string();
  }

  // Runs microdit-eval; returns its exit status, its output in *log.
  int evaluate(const std::string& args, std::string* log) const {
    const auto log_file = dir_.path / "eval.log";
    const std::string command =
        test::tool("microdit-eval") + " " + args + " > " + log_file.string() + " 2>&1";
    const int status = std::system(command.c_str());
    *log = test::read_bytes(log_file);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  test::TempDir dir_{"sample"};
  encoders::EncoderFiles files_;
  fs::path checkpoint_;
};

TEST_F(Sample, SameSeedSameImagesAtAnyBatchSize) {
  const std::string prompts = " --prompt 'a red square' --prompt 'a blue circle' --prompt 'green'";
  std::string log;
  const auto ck = " --checkpoint " + checkpoint_.string();
  ASSERT_EQ(sample(ck + prompts + " --seed 7 --batch-size 2 --out " + (dir_.path / "a").string(), &log), 0) << log;
  ASSERT_EQ(sample(ck + prompts + " --seed 7 --batch-size 3 --out " + (dir_.path / "b").string(), &log), 0) << log;
  ASSERT_EQ(sample(ck + prompts + " --seed 8 --batch-size 3 --out " + (dir_.path / "c").string(), &log), 0) << log;
  for (const char* name : {"00000.png", "00001.png", "00002.png", "grid.png"}) {
    const auto a = test::read_bytes(dir_.path / "a" / name);
    ASSERT_FALSE(a.empty()) << name;
    EXPECT_EQ(a, test::read_bytes(dir_.path / "b" / name)) << name;
    EXPECT_NE(a, test::read_bytes(dir_.path / "c" / name)) << name;
  }
  EXPECT_NE(test::read_bytes(dir_.path / "a" / "00000.png"), test::read_bytes(dir_.path / "a" / "00001.png"));
}

// The COCO protocol: captions drawn into captions.jsonl, image i from seed + i, so two processes
// (each its share of the batches) make the same files as one; a rerun makes only what is missing;
// other settings in the same folder are refused.
TEST_F(Sample, CocoImagesDoNotDependOnTheProcessSplitAndResume) {
  test::write_tiny_coco(dir_.path / "coco", 6);
  const auto common = " --checkpoint " + checkpoint_.string() + " --coco-captions " +
                      (dir_.path / "coco" / "captions_val2014.json").string() +
                      " --count 5 --batch-size 2 --seed 3 --out ";
  const auto one = dir_.path / "one", two = dir_.path / "two";
  std::string log;
  ASSERT_EQ(sample(common + one.string(), &log), 0) << log;
  ASSERT_EQ(sample(common + two.string(), &log, "RANK=0 WORLD_SIZE=2"), 0) << log;
  // Rank 0 of 2 made batches 0 and 2: images 0, 1 and 4.
  for (const int i : {0, 1, 4}) EXPECT_TRUE(fs::exists(two / fmt::format("{:05d}.png", i))) << i;
  for (const int i : {2, 3}) EXPECT_FALSE(fs::exists(two / fmt::format("{:05d}.png", i))) << i;
  ASSERT_EQ(sample(common + two.string(), &log, "RANK=1 WORLD_SIZE=2"), 0) << log;
  for (int i = 0; i < 5; ++i) {
    const auto name = fmt::format("{:05d}.png", i);
    ASSERT_FALSE(test::read_bytes(one / name).empty()) << name;
    EXPECT_EQ(test::read_bytes(one / name), test::read_bytes(two / name)) << name;
  }
  EXPECT_EQ(test::read_bytes(one / "captions.jsonl"), test::read_bytes(two / "captions.jsonl"));
  EXPECT_EQ(eval::read_caption_manifest(one / "captions.jsonl").size(), 5u);
  // Resume: only the missing image's batch is made again, the same image.
  const auto kept = test::read_bytes(one / "00003.png");
  fs::remove(one / "00003.png");
  ASSERT_EQ(sample(common + one.string(), &log), 0) << log;
  EXPECT_NE(log.find("1 of its batches to make"), std::string::npos) << log;
  EXPECT_EQ(test::read_bytes(one / "00003.png"), kept);
  // Another setting in the same folder would mix images of two runs.
  EXPECT_EQ(sample(common + one.string() + " --steps 4", &log), 1) << log;
  EXPECT_NE(log.find("made with steps = 3, this run has 4"), std::string::npos) << log;
  // Prompts into the COCO folder would replace its images.
  const auto first = test::read_bytes(one / "00000.png");
  EXPECT_EQ(sample(" --checkpoint " + checkpoint_.string() + " --prompt x --out " + one.string(),
                   &log),
            1)
      << log;
  EXPECT_NE(log.find("microdit-sample: --out " + one.string() +
                     " holds the images of a --coco-captions run (generation.json)"),
            std::string::npos)
      << log;
  EXPECT_EQ(test::read_bytes(one / "00000.png"), first);
}

// The whole protocol on the CPU: captions drawn, images sampled from a tiny checkpoint, FID
// against the COCO files of those captions (clean mode, a random TorchScript Inception with
// clean-fid's calling convention) and CLIP score (a random open_clip model), with the settings.
TEST_F(Sample, CocoProtocolSampledThenScored) {
  test::write_tiny_coco(dir_.path / "coco", 8);
  std::string log;
  const auto gen = dir_.path / "gen";
  ASSERT_EQ(sample(" --checkpoint " + checkpoint_.string() + " --coco-captions " +
                       (dir_.path / "coco" / "captions_val2014.json").string() +
                       " --count 6 --batch-size 4 --out " + gen.string(),
                   &log),
            0)
      << log;
  const auto manifest = eval::read_caption_manifest(gen / "captions.jsonl");
  // A corrupt real image is skipped and counted.
  test::write_bytes(dir_.path / "coco" / "val2014" / manifest[2].file_name, "not a png");
  const fs::path data = test::source_dir() / "tests" / "data";
  const auto result_path = dir_.path / "result.json";
  const std::string eval = " --coco " + gen.string() + " --real " +
                           (dir_.path / "coco" / "val2014").string() + " --inception " +
                           (data / "fid" / "clean_inception_random.pt").string() + clip_flags() +
                           " --batch-size 4 --out " + result_path.string();
  ASSERT_EQ(evaluate(eval, &log), 0) << log;
  const auto result = io::read_json_file(result_path);
  EXPECT_EQ(result.at("coco").at("captions").get<int64_t>(), 6);
  EXPECT_EQ(result.at("coco").at("generation").at("steps").get<int64_t>(), 3);
  EXPECT_EQ(result.at("generated").at("images").get<int64_t>(), 6);
  EXPECT_EQ(result.at("real").at("images").get<int64_t>(), 5);
  EXPECT_EQ(result.at("real").at("skipped").get<int64_t>(), 1);
  EXPECT_EQ(result.at("real").at("size").get<int64_t>(), 16);  // generation.json's image_size
  EXPECT_GT(result.at("fid").get<double>(), 0.0);
  // Per-image scores: one line per image with its caption; their mean is the CLIP score.
  const auto lines = test::read_bytes(gen.parent_path() / "result.clip_scores.jsonl");
  double sum = 0;
  int64_t n = 0;
  for (size_t at = 0, end; (end = lines.find('\n', at)) != std::string::npos; at = end + 1, ++n) {
    const auto line = io::parse_json(lines.substr(at, end - at), "test");
    EXPECT_EQ(line.at("caption").get<std::string>(), manifest[n].caption);
    sum += line.at("clip_score").get<double>();
  }
  EXPECT_EQ(n, 6);
  EXPECT_NEAR(result.at("clip_score").get<double>(), std::max(0.0, sum / 6), 1e-4);
  // An unfinished folder is refused, naming what is missing.
  fs::remove(gen / "00004.png");
  ASSERT_NE(evaluate(eval, &log), 0);
  EXPECT_NE(log.find("1 of 6 images missing"), std::string::npos) << log;
}

// Any folder of microdit-sample --prompts output scores against its prompt file (CLIP score
// only, without --inception); the file is read as microdit-sample reads it.
TEST_F(Sample, CaptionsFilePairsAFolderWithItsPrompts) {
  const auto prompts = dir_.path / "prompts.txt", out = dir_.path / "p";
  test::write_bytes(prompts, "a red square\na blue circle\ngreen\n");
  std::string log;
  ASSERT_EQ(sample(" --checkpoint " + checkpoint_.string() + " --prompts " + prompts.string() +
                       " --out " + out.string(), &log), 0) << log;
  const auto result_path = dir_.path / "captions.json";
  const auto args = " --generated " + out.string() + " --captions " + prompts.string() +
                    clip_flags() + " --out " + result_path.string();
  ASSERT_EQ(evaluate(args, &log), 0) << log;
  const auto result = io::read_json_file(result_path);
  EXPECT_EQ(result.at("clip").at("pairs").get<int64_t>(), 3);
  EXPECT_TRUE(result.at("clip_score").is_number());
  EXPECT_FALSE(result.contains("fid"));
  test::write_bytes(prompts, "a red square\n\ngreen\n");
  EXPECT_EQ(evaluate(args, &log), 1) << log;
  EXPECT_NE(log.find(prompts.string() + ":2: empty prompt line"), std::string::npos) << log;
}

// microdit-sample's GPU path: the same images on CUDA in float32 (TF32 off) as on the CPU, and
// close in bf16 (encoders in bf16, the DiT under bf16 autocast).
TEST_F(Sample, ImagesOnDeviceMatchTheCpu_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#ifndef MICRODIT_HAVE_PCRE2
  GTEST_SKIP()
      << "a build without PCRE2 has no CLIP tokenizer (the GPU machine has no libpcre2-dev)";
#endif
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  const auto weights = train::load_sampling_weights(checkpoint_, false);
  auto images_on = [&](at::Device device, at::ScalarType dtype) {
    auto encoders = encoders::load_pipeline_encoders(files_, device, dtype);
    model::DiT dit(tiny_config().model.resolved());
    io::load_state_dict(*dit, weights.tensors);
    dit->to(device);
    diffusion::TextToImageOptions o;
    o.steps = 3;
    o.bf16 = dtype != at::kFloat;
    return diffusion::text_to_image(dit, encoders, {"a red square", "green"}, o, {});
  };
  const auto cpu = images_on(at::kCPU, at::kFloat);
  const auto cuda = images_on(at::Device(at::kCUDA), at::kFloat);
  const auto bf16 = images_on(at::Device(at::kCUDA), at::kBFloat16);
  EXPECT_LE((cuda - cpu).abs().max().item<float>(), 1e-3);
  EXPECT_LE((bf16 - cpu).abs().mean().item<float>(), 0.03);
  EXPECT_TRUE(at::isfinite(bf16).all().item<bool>());
}

TEST_F(Sample, ImagesAreTheDecodedSamplerOutput) {
  // The library path the tool runs: 16x16 RGB images in [0, 1], one per prompt.
  auto encoders = encoders::load_pipeline_encoders(files_, at::kCPU, at::kFloat);
  const auto weights = train::load_sampling_weights(checkpoint_, false);
  ASSERT_TRUE(weights.config_yaml.has_value());
  model::DiT dit(tiny_config().model.resolved());
  io::load_state_dict(*dit, weights.tensors);
  diffusion::TextToImageOptions o;
  o.steps = 3;
  const auto images = diffusion::text_to_image(dit, encoders, {"a", "b"}, o, {});
  EXPECT_EQ(images.sizes(), (at::IntArrayRef{2, 3, 16, 16}));
  EXPECT_GE(images.min().item<float>(), 0.0f);
  EXPECT_LE(images.max().item<float>(), 1.0f);
}

TEST_F(Sample, BadInputIsAClearError) {
  std::string log;
  const auto ck = " --checkpoint " + checkpoint_.string() + " --out " + (dir_.path / "x").string();
  test::write_bytes(dir_.path / "prompts.txt", "a cat\n\na dog\n");
  EXPECT_EQ(sample(ck + " --prompts " + (dir_.path / "prompts.txt").string(), &log), 1);
  EXPECT_NE(log.find("prompts.txt:2: empty prompt line"), std::string::npos) << log;

  EXPECT_EQ(sample(ck + " --prompt x --ema", &log), 1);
  EXPECT_NE(log.find("no EMA weights"), std::string::npos) << log;

  // Plain weights of the tiny model read as MicroDiT_Tiny_2: the mismatch is named.
  EXPECT_EQ(sample(" --checkpoint " + (dir_.path / "plain.safetensors").string() +
                       " --arch MicroDiT_Tiny_2 --prompt x --out " + (dir_.path / "y").string(),
                   &log),
            1);
  // Named from the file's shapes, one line, before the 200M-parameter model is built.
  EXPECT_NE(log.find("plain.safetensors: the weights are not of this model (200692752 parameters)"),
            std::string::npos)
      << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;

  // A VAE of other latent channels than the model's, before anything is sampled (the flag given
  // last wins).
  const fs::path vae16 = test::source_dir() / "tests" / "data" / "vae" / "tiny_d16";
  EXPECT_EQ(sample(ck + " --prompt x --vae " + vae16.string(), &log), 1);
  EXPECT_NE(log.find("microdit-sample: " + vae16.string() +
                     ": the VAE has 16 latent channels, the model's in_channels is 4"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("sampling"), std::string::npos) << log;

  EXPECT_EQ(sample(" --checkpoint " + (dir_.path / "missing.pt").string() + " --prompt x --out o", &log), 1);
  EXPECT_NE(log.find("missing.pt: no such file"), std::string::npos) << log;
  EXPECT_EQ(sample(ck, &log), 2);
  EXPECT_NE(log.find("--prompt"), std::string::npos) << log;
}

}  // namespace
}  // namespace microdit
