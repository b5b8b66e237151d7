// microdit-bench runs microdit-train's trainer: on the same config and seed it prints the losses
// that microdit-train writes to metrics.jsonl, warm-up steps included, in one JSON line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

// Runs `command` with its output in `log`; returns the exit status.
int run(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<double> metrics_losses(const fs::path& run_dir) {
  std::vector<double> losses;
  for (const auto& record : test::metrics_records(run_dir)) {
    if (const auto* loss = io::json_find(record, "loss")) losses.push_back(loss->get<double>());
  }
  return losses;
}

TEST(Bench, PrintsTheLossesOfMicroditTrain) {
  const test::TempDir dir("bench");
  const fs::path config = test::source_dir() / "configs" / "debug_tiny.yaml";
  const fs::path run_dir = dir.path / "run";
  ASSERT_EQ(run(test::tool("microdit-train") + " --config " + config.string() +
                    " --set run.dir=" + run_dir.string(),
                dir.path / "train.log"),
            0)
      << test::read_bytes(dir.path / "train.log");
  const auto trained = metrics_losses(run_dir);  // debug_tiny logs every step

  const fs::path bench_dir = dir.path / "bench_run";
  const fs::path out = dir.path / "bench.log";
  ASSERT_EQ(run(test::tool("microdit-bench") + " --config " + config.string() +
                    " --set run.dir=" + bench_dir.string() + " --steps 2",
                out),
            0)
      << test::read_bytes(out);
  EXPECT_FALSE(fs::exists(bench_dir));  // the bench writes nothing
  std::istringstream lines(test::read_bytes(out));
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  const auto row = io::parse_json(line, "test");
  EXPECT_EQ(row.at("steps").get<int64_t>(), 2);
  EXPECT_EQ(row.at("warmup").get<int64_t>(), 3);
  EXPECT_EQ(row.at("execution").get<std::string>(), "reference");  // auto on the CPU
  EXPECT_GT(row.at("step_images_per_s").get<double>(), 0);
  const auto& losses = row.at("losses");
  ASSERT_EQ(losses.size(), 5u);  // 3 warm-up + 2 timed steps
  ASSERT_GE(trained.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(losses.at(i).get<double>(), trained[i], 1e-6 * std::abs(trained[i]))
        << "step " << i + 1;
  }
  EXPECT_EQ(row.at("loss").get<double>(), losses.at(std::size_t{4}).get<double>());
}

}  // namespace
}  // namespace microdit
