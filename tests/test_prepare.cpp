// microdit-prepare end to end on generated images with tiny random encoders (the diffusers-made
// tiny VAE of tests/data/vae/tiny, a random CLIP text tower with the real vocabulary and
// tokenizer), then training on its output; resumption, the split between processes, and the
// input lists.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include <sys/wait.h>

#include "microdit/data/caption_cleaner.h"
#include "microdit/data/mds.h"
#include "microdit/data/prepare.h"
#include "microdit/image/decode.h"
#include "microdit/image/resize.h"
#include "microdit/io/json.h"
#include "microdit/io/png.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/train/config.h"
#include "microdit/train/trainer.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

const fs::path kData = test::source_dir() / "tests" / "data";

// A folder of six captioned 20x16 PNGs, one unreadable image and one image without caption.
const std::vector<std::string> kCaptions{"A RED square!", "a green  circle", "Blue   sky",
                                         "<b>bold</b> text", "www.example.com a cat", "the end"};

void make_images(const fs::path& dir) {
  fs::create_directories(dir);
  at::manual_seed(1);
  for (std::size_t i = 0; i < kCaptions.size(); ++i) {
    const auto image = at::randint(0, 256, {16, 20, 3}, at::kByte);
    const auto stem = dir / ("img" + std::to_string(i));
    test::write_bytes(fs::path(stem).replace_extension(".png"), io::encode_png(image));
    test::write_bytes(fs::path(stem).replace_extension(".txt"), kCaptions[i]);
  }
  test::write_bytes(dir / "zz_broken.png", "not a png at all");
  test::write_bytes(dir / "zz_broken.txt", "a broken image");
  test::write_bytes(dir / "zz_uncaptioned.png", io::encode_png(at::zeros({16, 20, 3}, at::kByte)));
}

class Prepare : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("microdit-prepare-" + std::to_string(::getpid()));
    test::remove_tree(dir_);
    make_images(dir_ / "images");
    files_ = test::tiny_encoder_files(dir_ / "clip");
  }
  void TearDown() override { test::remove_tree(dir_); }

  data::PrepareOptions options(const fs::path& out) const {
    data::PrepareOptions o;
    o.inputs = {dir_ / "images"};
    o.out = out;
    o.resolutions = {16};
    o.batch_size = 3;
    o.sources.entries_per_part = 4;
    return o;
  }

  // The microdit-prepare command line with the tiny encoders, at 16 px, its output in `log`.
  std::string prepare_command(const fs::path& out, const std::string& flags,
                              const fs::path& input, const fs::path& log) const {
    return test::tool("microdit-prepare") + " --out " + out.string() + " --vae " +
           files_.vae.string() + " --text-encoder " + files_.text_encoder.string() +
           " --text-config " + files_.text_config.string() + " --tokenizer " +
           files_.tokenizer.string() + " --resolutions 16 " + flags + " " + input.string() +
           " > " + log.string() + " 2>&1";
  }

  fs::path dir_;
  encoders::EncoderFiles files_;
};

TEST_F(Prepare, CommandLineWritesMDSThatTrainingReads) {
  const fs::path out = dir_ / "out";
  const std::string command = prepare_command(out, "--batch-size 3 --entries-per-part 4",
                                              dir_ / "images", dir_ / "log.txt");
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_bytes(dir_ / "log.txt");
  const std::string log = test::read_bytes(dir_ / "log.txt");
  EXPECT_NE(log.find("skipping " + (dir_ / "images" / "zz_broken.png").string()), std::string::npos)
      << log;
  EXPECT_NE(log.find("no caption file"), std::string::npos) << log;
  EXPECT_NE(log.find("6 samples written, 2 skipped"), std::string::npos) << log;

  // The merged index lists both parts' shards; captions are cleaned as the official pipeline.
  const data::MDSReader reader(out);
  ASSERT_EQ(reader.size(), 6);
  EXPECT_EQ(reader.columns(), (std::vector<std::string>{"caption", "caption_latents", "latents_16"}));
  std::vector<std::string> stored;
  for (int64_t i = 0; i < reader.size(); ++i) stored.push_back(reader.get(i).str("caption"));
  for (std::size_t i = 0; i < kCaptions.size(); ++i) {
    EXPECT_EQ(stored[i], data::clean_caption(kCaptions[i])) << kCaptions[i];
  }
  EXPECT_EQ(stored[0], "a red square!");

  // caption_latents: the text tower's 77 token states of the cleaned caption, in fp16 (computed
  // here alone, there in a batch of three: equal up to fp16 rounding).
  {
    auto encoders = encoders::load_pipeline_encoders(files_, at::kCPU, at::kFloat);
    at::NoGradGuard no_grad;
    const auto ids = encoders.tokenizer->tokenize({stored[2]});
    const auto expected = encoders.text_encoder(ids)[0];
    const data::MDSSample sample = reader.get(2);
    const auto& bytes = sample.bytes("caption_latents");
    ASSERT_EQ(bytes.size(), 77u * 32u * 2u);
    const auto got =
        at::from_blob(const_cast<char*>(bytes.data()), {77, 32}, at::kHalf).to(at::kFloat);
    EXPECT_TRUE(at::allclose(got, expected, 1e-3, 1e-3))
        << (got - expected).abs().max().item<float>();
  }

  // latents_16: a posterior sample of the tiny VAE (factor 2: 4x8x8) of the resized image, times
  // the scaling factor: within a few posterior standard deviations of the scaled mean.
  {
    auto encoders = encoders::load_pipeline_encoders(files_, at::kCPU, at::kFloat);
    at::NoGradGuard no_grad;
    const auto image = image::read_image_rgb(dir_ / "images" / "img0.png");
    const auto posterior = encoders.vae->encode(image::preprocess(image, 16).unsqueeze(0));
    const double scale = encoders.vae->config().scaling_factor;
    const data::MDSSample first = reader.get(0);
    const auto& latent_bytes = first.bytes("latents_16");
    ASSERT_EQ(latent_bytes.size(), 4u * 8u * 8u * 2u);
    const auto latent =
        at::from_blob(const_cast<char*>(latent_bytes.data()), {4, 8, 8}, at::kHalf).to(at::kFloat);
    // The random VAE's log-variances span the whole clamp range: compare where fp16 resolves
    // a posterior standard deviation (0.01 .. 100).
    const auto std = posterior.std[0];
    const auto usable = (std > 0.01) & (std < 100);
    ASSERT_GT(usable.sum().item<int64_t>(), 20);
    const auto z = ((latent / scale - posterior.mean[0]) / std).masked_select(usable);
    EXPECT_LT(z.abs().max().item<double>(), 5.0);
    EXPECT_GT(z.std().item<double>(), 0.5) << "a sample, not the mean";
  }

  // Training on the result (model input 8x8x4, caption width 32).
  auto c = train::parse_train_config(R"(
run: {dir: )" + (dir_ / "run").string() + R"(, device: cpu, log_every: 1}
)" + test::tiny_latent_model_yaml() + R"(
optim: {steps: 3, batch_size: 4, lr: 0.001, mask_ratio: 0.5}
data: {kind: mds, mds_dirs: [)" + out.string() + R"(], resolution: 16, caption_tokens: 77}
)");
  const auto r = train::Trainer(c).run();
  ASSERT_EQ(r.losses.size(), 3u);
  for (double loss : r.losses) EXPECT_TRUE(std::isfinite(loss));
}

// Inputs of which none can be prepared end in one line and exit 1, not an empty dataset that
// training would refuse later with a less clear message.
TEST_F(Prepare, NothingPreparedIsAnError) {
  const fs::path images = dir_ / "only_broken", out = dir_ / "empty_out", log = dir_ / "empty.txt";
  fs::create_directories(images);
  fs::copy_file(dir_ / "images" / "zz_broken.png", images / "zz_broken.png");
  fs::copy_file(dir_ / "images" / "zz_broken.txt", images / "zz_broken.txt");
  const int status = std::system(prepare_command(out, "", images, log).c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << test::read_bytes(log);
  EXPECT_NE(test::read_bytes(log).find("microdit-prepare: " + out.string() +
                                       ": no sample could be prepared; every input was skipped"),
            std::string::npos)
      << test::read_bytes(log);
}

TEST_F(Prepare, ResumesAtTheFirstIncompletePart) {
  auto encoders = encoders::load_pipeline_encoders(files_, at::kCPU, at::kFloat);
  const auto o = options(dir_ / "out");
  const auto first = data::prepare_dataset(o, encoders);
  EXPECT_EQ(first.parts, 2);  // 8 images, 4 per part
  EXPECT_EQ(first.samples_written, 6);
  EXPECT_EQ(first.skipped, 2);
  EXPECT_TRUE(first.merged);
  const auto index = test::read_bytes(o.out / "index.json");

  const auto again = data::prepare_dataset(o, encoders);
  EXPECT_EQ(again.parts_resumed, 2);
  EXPECT_EQ(again.samples_written, 0);

  // An interrupted part: its directory never got renamed; the stale .partial is redone.
  fs::rename(o.out / "part-00001", o.out / "part-00001.partial");
  test::write_bytes(o.out / "part-00001.partial" / "shard.00000.mds", "cut off");
  const auto resumed = data::prepare_dataset(o, encoders);
  EXPECT_EQ(resumed.parts_resumed, 1);
  EXPECT_EQ(resumed.samples_written, 2);  // part 1: img4, img5, zz_broken, zz_uncaptioned
  EXPECT_FALSE(fs::exists(o.out / "part-00001.partial"));
  EXPECT_EQ(test::read_bytes(o.out / "index.json"), index);
  EXPECT_EQ(data::MDSReader(o.out).size(), 6);
}

// A rerun with options that change the samples would mix two kinds of sample in one dataset.
TEST_F(Prepare, ARerunWithOtherSettingsIsRefused) {
  auto encoders = encoders::load_pipeline_encoders(files_, at::kCPU, at::kFloat);
  auto o = options(dir_ / "out");
  data::prepare_dataset(o, encoders);
  const std::string index = test::read_bytes(o.out / "index.json");
  const std::string stats = (o.out / "part-00000" / "prepare.json").string();
  o.resolutions = {24};
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { data::prepare_dataset(o, encoders); }, stats,
      {"prepared with --resolutions [16], this run asks for [24]", "or another --out"}));
  o.resolutions = {16};
  o.seed += 1;
  EXPECT_TRUE(test::throws_with<std::invalid_argument>([&] { data::prepare_dataset(o, encoders); },
                                                       stats, {"--seed"}));
  o.seed -= 1;
  EXPECT_EQ(data::prepare_dataset(o, encoders).parts_resumed, 2);
  EXPECT_EQ(test::read_bytes(o.out / "index.json"), index);
}

TEST_F(Prepare, ProcessesShareTheParts) {
  auto encoders = encoders::load_pipeline_encoders(files_, at::kCPU, at::kFloat);
  auto o = options(dir_ / "out");
  o.num_processes = 2;
  o.process_index = 1;
  const auto second = data::prepare_dataset(o, encoders);
  EXPECT_EQ(second.parts_mine, 1);
  EXPECT_FALSE(second.merged) << "part 0 is not written yet";
  EXPECT_FALSE(fs::exists(o.out / "index.json"));
  o.process_index = 0;
  const auto first = data::prepare_dataset(o, encoders);
  EXPECT_TRUE(first.merged);
  EXPECT_EQ(first.samples_written + second.samples_written, 6);
  EXPECT_EQ(data::MDSReader(o.out).size(), 6);
  o.process_index = 2;
  EXPECT_THROW(data::prepare_dataset(o, encoders), std::invalid_argument);
}

TEST_F(Prepare, ListFilesNameTheirImagesAndCaptions) {
  const fs::path list = dir_ / "list";
  fs::create_directories(list);
  test::write_bytes(list / "pairs.csv",
             "file_name,text\n" + (dir_ / "images" / "img0.png").string() +
                 ",\"a cat, \"\"quoted\"\"\"\nimg1.png,\"two\nlines\"\n");
  test::write_bytes(list / "pairs.jsonl", R"({"image": "a.png", "caption": "x"})"
                                   "\n\n"
                                   R"({"image": "b.png", "caption": "y"})"
                                   "\n");
  const auto parts = data::plan_parts({list / "pairs.csv", list / "pairs.jsonl"});
  ASSERT_EQ(parts.size(), 2u);
  ASSERT_EQ(parts[0].entries.size(), 2u);
  EXPECT_EQ(parts[0].entries[0].caption, "a cat, \"quoted\"");
  EXPECT_EQ(parts[0].entries[1].image, list / "img1.png");
  EXPECT_EQ(parts[0].entries[1].caption, "two\nlines");
  EXPECT_EQ(parts[1].entries[1].image, list / "b.png");
  EXPECT_EQ(parts[1].index, 1);

  test::write_bytes(list / "bad.csv", "image,title\na.png,x\n");
  EXPECT_TRUE(test::throws_with([&] { data::plan_parts({list / "bad.csv"}); },
                                (list / "bad.csv").string(), {"no caption column", "title"}));
  test::write_bytes(list / "short.csv", "image,caption\na.png\n");
  EXPECT_TRUE(test::throws_with([&] { data::plan_parts({list / "short.csv"}); },
                                (list / "short.csv").string() + ":2", {"1 fields"}));
  test::write_bytes(list / "bad.jsonl", "{\"image\": \"a.png\", \"caption\": \"x\"}\n{oops\n");
  EXPECT_TRUE(test::throws_with([&] { data::plan_parts({list / "bad.jsonl"}); },
                                (list / "bad.jsonl").string() + ":2", {}));
  EXPECT_TRUE(test::throws_with([&] { data::plan_parts({dir_ / "missing"}); },
                                (dir_ / "missing").string(), {"no such file"}));
  EXPECT_TRUE(test::throws_with([&] { data::plan_parts({list / "pairs.txt"}); },
                                (list / "pairs.txt").string(), {}));
}

// A WebDataset shard is one part: the image member by extension, the caption from .txt; samples
// without an image are reported, not dropped silently.
TEST(PrepareSources, WebDatasetTarSamples) {
#ifndef MICRODIT_HAVE_LIBARCHIVE
  GTEST_SKIP() << "tars are read through libarchive, which this build lacks";
#endif
  const auto tar = kData / "tar" / "wds_ustar.tar";
  const auto parts = data::plan_parts({tar});
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].tar, tar);
  std::vector<data::RawSample> samples;
  data::for_each_raw_sample(parts[0], [&](data::RawSample&& s) { samples.push_back(std::move(s)); });
  ASSERT_GE(samples.size(), 3u);
  EXPECT_EQ(samples[0].name, tar.string() + ":00000");
  EXPECT_TRUE(samples[0].error.empty()) << samples[0].error;
  EXPECT_FALSE(samples[0].image_bytes.empty());
  EXPECT_FALSE(samples[0].caption.empty());
  EXPECT_EQ(samples[1].name, tar.string() + ":00001");
  EXPECT_TRUE(samples[1].error.empty()) << samples[1].error;
  EXPECT_EQ(samples[2].name, tar.string() + ":dir/00002");
  EXPECT_EQ(samples[2].error, "no image member");
}

// Compressed shards, given or found in a folder, give the samples of the tar inside them.
TEST(PrepareSources, CompressedWebDatasetShards) {
#ifndef MICRODIT_HAVE_LIBARCHIVE
  GTEST_SKIP() << "tars are read through libarchive, which this build lacks";
#endif
  auto samples_of = [](const fs::path& tar) {
    const auto parts = data::plan_parts({tar});
    EXPECT_EQ(parts.size(), 1u) << tar;
    std::vector<std::string> samples;  // name without the shard's path, error, image, caption
    data::for_each_raw_sample(parts.at(0), [&](data::RawSample&& s) {
      samples.push_back(s.name.substr(tar.string().size()) + "|" + s.error + "|" + s.image_bytes +
                        "|" + s.caption);
    });
    return samples;
  };
  const auto plain_pax = samples_of(kData / "tar" / "wds_pax.tar");
  ASSERT_GE(plain_pax.size(), 3u);
  EXPECT_EQ(samples_of(kData / "tar" / "wds_pax.tar.gz"), plain_pax);
  EXPECT_EQ(samples_of(kData / "tar" / "wds_gnu.tar.zst"),
            samples_of(kData / "tar" / "wds_gnu.tar"));

  test::TempDir dir("prepare_tars");
  for (const char* name : {"a.tgz", "b.tar.zst", "c.tar.bz2"}) {
    fs::copy_file(kData / "tar" / "wds_pax.tar.gz", dir.path / name);
  }
  const auto parts = data::plan_parts({dir.path});
  ASSERT_EQ(parts.size(), 2u);  // .tar.bz2 is not read
  EXPECT_EQ(parts[0].tar, dir.path / "a.tgz");
  EXPECT_EQ(parts[1].tar, dir.path / "b.tar.zst");
}

}  // namespace
}  // namespace microdit
