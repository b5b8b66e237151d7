// microdit-eval end to end on the CPU, in both modes: FID of a folder against itself is 0,
// against other images it is positive, cached real statistics give the same number (and are
// refused in the other mode), unreadable real images are skipped and counted. The networks are
// random (the real files cannot be downloaded here); they are checked against pytorch-fid in
// test_fid_inception.cpp and against clean-fid in test_clean_fid.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "microdit/eval/fid_inception.h"
#include "microdit/io/json.h"
#include "microdit/io/png.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

class Eval : public testing::Test {
 protected:
  void SetUp() override {
    eval::FIDInceptionV3 net;
    {
      // He-style scales keep the features of a random 94-layer network alive and input-dependent.
      at::NoGradGuard no_grad;
      at::manual_seed(5);
      for (auto& p : net->named_parameters()) {
        auto& t = p.value();
        if (p.key().ends_with("conv.weight")) {
          t.uniform_(-1, 1).mul_(std::sqrt(6.0 / static_cast<double>(t[0].numel())));
        } else if (p.key().ends_with("bn.weight")) {
          t.uniform_(0.8, 1.2);
        } else {
          t.uniform_(-0.1, 0.1);
        }
      }
      for (auto& b : net->named_buffers()) {
        if (b.key().ends_with("running_var")) b.value().uniform_(0.5, 1.5);
        if (b.key().ends_with("running_mean")) b.value().uniform_(-0.1, 0.1);
      }
    }
    inception_ = dir_.path / "inception.safetensors";
    io::save_safetensors(inception_, io::state_dict(*net));
    write_images(dir_.path / "a", 0);
    write_images(dir_.path / "b", 100);
  }

  static void write_images(const fs::path& dir, int seed) {
    fs::create_directories(dir);
    at::manual_seed(seed);
    for (int i = 0; i < 4; ++i) {
      test::write_bytes(dir / ("img" + std::to_string(i) + ".png"),
                        io::encode_png(at::randint(0, 256, {16, 16, 3}, at::kByte)));
    }
  }

  // Runs the tool with `network` (mode and --inception; pytorch-fid with the random weights if
  // empty); returns the result JSON (null on failure) and the exit status in *status.
  io::Json evaluate(const std::string& args, int* status, const std::string& network = "") const {
    const auto out = dir_.path / "result.json";
    fs::remove(out);
    const std::string command =
        test::tool("microdit-eval") + " " +
        (network.empty() ? "--mode pytorch-fid --inception " + inception_.string() : network) +
        " --out " + out.string() + " " + args + " > " + (dir_.path / "log.txt").string() + " 2>&1";
    const int raw = std::system(command.c_str());
    *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    return fs::exists(out) ? io::read_json_file(out) : io::Json();
  }

  test::TempDir dir_{"eval"};
  fs::path inception_;
};

TEST_F(Eval, FidOfFolders) {
  int status = 0;
  const auto a = (dir_.path / "a").string(), b = (dir_.path / "b").string();
  const auto same = evaluate("--generated " + a + " --real " + a + " --real-size 16", &status);
  ASSERT_EQ(status, 0) << test::read_bytes(dir_.path / "log.txt");
  EXPECT_EQ(same.at("generated").at("images").get<int64_t>(), 4);
  EXPECT_EQ(same.at("mode").get<std::string>(), "pytorch-fid");

  // Another set, with one unreadable real image: skipped, counted.
  test::write_bytes(dir_.path / "b" / "zz_broken.png", "not an image");
  const auto stats = (dir_.path / "b_stats.safetensors").string();
  const auto other = evaluate(
      "--generated " + a + " --real " + b + " --real-size 16 --save-real-stats " + stats, &status);
  ASSERT_EQ(status, 0) << test::read_bytes(dir_.path / "log.txt");
  // A set against itself: 0 up to rounding (4 images give rank-deficient covariances).
  EXPECT_LT(std::abs(same.at("fid").get<double>()), 1e-4 * other.at("fid").get<double>())
      << same.at("fid").get<double>() << " vs " << other.at("fid").get<double>();
  EXPECT_EQ(other.at("real").at("skipped").get<int64_t>(), 1);
  EXPECT_EQ(other.at("real").at("images").get<int64_t>(), 4);

  const auto cached = evaluate("--generated " + a + " --real-stats " + stats, &status);
  ASSERT_EQ(status, 0) << test::read_bytes(dir_.path / "log.txt");
  EXPECT_DOUBLE_EQ(cached.at("fid").get<double>(), other.at("fid").get<double>());
}

// clean-fid's clean mode (the default) with the random TorchScript network of test_clean_fid.cpp.
TEST_F(Eval, CleanModeFidOfFolders) {
  const std::string clean =
      "--inception " +
      (test::source_dir() / "tests/data/fid/clean_inception_random.pt").string();
  int status = 0;
  const auto a = (dir_.path / "a").string(), b = (dir_.path / "b").string();
  const auto same =
      evaluate("--generated " + a + " --real " + a + " --real-size 16", &status, clean);
  ASSERT_EQ(status, 0) << test::read_bytes(dir_.path / "log.txt");
  EXPECT_EQ(same.at("mode").get<std::string>(), "clean");
  const auto stats = (dir_.path / "b_clean_stats.safetensors").string();
  const auto other =
      evaluate("--generated " + a + " --real " + b + " --real-size 16 --save-real-stats " + stats,
               &status, "--mode clean " + clean);
  ASSERT_EQ(status, 0) << test::read_bytes(dir_.path / "log.txt");
  EXPECT_GT(other.at("fid").get<double>(), 0.0);
  EXPECT_LT(std::abs(same.at("fid").get<double>()), 1e-4 * other.at("fid").get<double>())
      << same.at("fid").get<double>() << " vs " << other.at("fid").get<double>();

  const auto cached = evaluate("--generated " + a + " --real-stats " + stats, &status, clean);
  ASSERT_EQ(status, 0) << test::read_bytes(dir_.path / "log.txt");
  EXPECT_DOUBLE_EQ(cached.at("fid").get<double>(), other.at("fid").get<double>());
  // Clean statistics against pytorch-fid features: refused, naming the file and both modes.
  evaluate("--generated " + a + " --real-stats " + stats, &status);
  EXPECT_EQ(status, 1);
  const std::string log = test::read_bytes(dir_.path / "log.txt");
  EXPECT_NE(log.find(stats + ": statistics were computed in --mode clean, this run uses --mode "
                             "pytorch-fid"),
            std::string::npos)
      << log;
}

TEST_F(Eval, BadInputIsAClearError) {
  int status = 0;
  const auto a = (dir_.path / "a").string();
  evaluate("--generated " + a + " --real " + a + " --inception " + (dir_.path / "no.pth").string(),
           &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find("no.pth"), std::string::npos);
  evaluate("--generated " + (dir_.path / "none").string() + " --real " + a, &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find("none: no such folder"),
            std::string::npos);
  evaluate("--generated " + a, &status);
  EXPECT_EQ(status, 2);
  evaluate("--generated " + a + " --real " + a, &status, "--mode tf --inception x.pt");
  EXPECT_EQ(status, 2);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find("--mode must be clean or pytorch-fid"),
            std::string::npos);
  evaluate("--generated " + a, &status, " ");
  EXPECT_EQ(status, 2);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find("nothing to compute"), std::string::npos);
  evaluate("--generated " + a + " --clip " + a, &status, " ");
  EXPECT_EQ(status, 2);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find("CLIP score needs captions"),
            std::string::npos);
  evaluate("--coco " + a + " --clip-open-clip c.json", &status, " ");
  EXPECT_EQ(status, 2);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find("needs --clip-weights and --clip-vocab"),
            std::string::npos);
  // FID needs two images or more, and statistics of the network's width.
  const fs::path one = dir_.path / "one";
  fs::create_directories(one);
  fs::copy_file(dir_.path / "a" / "img0.png", one / "img0.png");
  evaluate("--generated " + one.string() + " --real " + a, &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt")
                .find(one.string() + ": FID needs at least 2 readable images, found 1"),
            std::string::npos)
      << test::read_bytes(dir_.path / "log.txt");
  const fs::path stats16 = test::source_dir() / "tests" / "data" / "fid" / "stats16.npz";
  evaluate("--generated " + a + " --real-stats " + stats16.string(), &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt")
                .find(stats16.string() + ": statistics of 16 features, the Inception network "
                                         "gives 2048"),
            std::string::npos)
      << test::read_bytes(dir_.path / "log.txt");
  // Clean mode given pytorch-fid's weights: the TorchScript loader names the file.
  evaluate("--generated " + a + " --real " + a, &status, "--inception " + inception_.string());
  EXPECT_EQ(status, 1);
  EXPECT_NE(test::read_bytes(dir_.path / "log.txt").find(inception_.string() + ": cannot load"),
            std::string::npos);
}

// An output that would replace an input (or another output) is refused before anything is read.
TEST_F(Eval, OutputsNeverReplaceWhatTheRunReads) {
  const fs::path a = dir_.path / "a", log = dir_.path / "log.txt";
  const fs::path result = dir_.path / "r.json", stats = dir_.path / "real.safetensors";
  const fs::path captions = dir_.path / "captions.txt";
  test::write_bytes(captions, "a\nb\nc\nd\n");
  const std::string image = test::read_bytes(a / "img0.png");
  const std::string fid = "--inception " + inception_.string() + " --generated " + a.string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {fid + " --real " + a.string() + " --out " + (a / "img0.png").string(),
       "--out " + (a / "img0.png").string() + " is a file of the --generated folder"},
      {fid + " --real " + a.string() + " --out " + result.string() + " --save-real-stats " +
           (dir_.path / "." / "r.json").string(),
       "--out and --save-real-stats are the same file"},
      {fid + " --real-stats " + stats.string() + " --out " + stats.string(),
       "--out " + stats.string() + " is also the --real-stats input"},
      {"--generated " + a.string() + " --captions " + captions.string() + " --clip " +
           a.string() + " --out " + result.string() + " --clip-scores " + captions.string(),
       "--clip-scores " + captions.string() + " is also the --captions input"}};
  for (const auto& [args, message] : cases) {
    const int raw = std::system(
        (test::tool("microdit-eval") + " " + args + " > " + log.string() + " 2>&1").c_str());
    EXPECT_EQ(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, 2) << args;
    EXPECT_NE(test::read_bytes(log).find("microdit-eval: " + message), std::string::npos)
        << test::read_bytes(log);
  }
  EXPECT_EQ(test::read_bytes(a / "img0.png"), image);
  EXPECT_EQ(test::read_bytes(captions), "a\nb\nc\nd\n");
  EXPECT_FALSE(fs::exists(result));
}

}  // namespace
}  // namespace microdit
