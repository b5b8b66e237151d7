// Tests for metrics.jsonl: one JSON object per line, appended, non-finite values as null.
#include <gtest/gtest.h>

#include "test_support.h"
#include <unistd.h>

#include <fstream>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "microdit/train/metrics_log.h"

namespace microdit::train {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

fs::path scratch_dir(const std::string& test) {
  const auto dir =
      fs::temp_directory_path() / ("microdit-metrics-" + std::to_string(::getpid()) + "-" + test);
  test::remove_tree(dir);
  return dir;
}

TEST(MetricsLog, WritesOneObjectPerLineInOrder) {
  const auto dir = scratch_dir("lines");
  const auto path = dir / "run" / "metrics.jsonl";  // parent directories are created
  MetricsLog log(path);
  log.write(10, {{"loss", 0.5}, {"lr", 2.4e-4}});
  // Readable before the log is closed: every line is flushed.
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"step":10,"loss":0.5,"lr":0.00024})");
  log.write(20, {{"loss", 0.25}});
  lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  const auto record = io::parse_json(lines[1], "test");
  EXPECT_EQ(record.at("step").get<int64_t>(), 20);
  EXPECT_EQ(record.at("loss").get<double>(), 0.25);
  test::remove_tree(dir);
}

TEST(MetricsLog, NonFiniteValuesBecomeNull) {
  const auto dir = scratch_dir("null");
  MetricsLog log(dir / "metrics.jsonl");
  log.write(1, {{"loss", std::numeric_limits<double>::quiet_NaN()},
                {"grad_norm", std::numeric_limits<double>::infinity()},
                {"neg", -std::numeric_limits<double>::infinity()}});
  const auto lines = read_lines(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"step":1,"loss":null,"grad_norm":null,"neg":null})");
  test::remove_tree(dir);
}

TEST(MetricsLog, AppendsToAnExistingLog) {
  const auto dir = scratch_dir("append");
  const auto path = dir / "metrics.jsonl";
  MetricsLog(path).write(1, {{"loss", 1.0}});
  MetricsLog(path).write(2, {{"loss", 2.0}});  // a resumed run
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(io::parse_json(lines[0], "test").at("step").get<int64_t>(), 1);
  EXPECT_EQ(io::parse_json(lines[1], "test").at("step").get<int64_t>(), 2);
  test::remove_tree(dir);
}

TEST(MetricsLog, RepeatedOrReservedNamesAreRejected) {
  const auto dir = scratch_dir("names");
  MetricsLog log(dir / "metrics.jsonl");
  EXPECT_THROW(log.write(1, {{"loss", 1.0}, {"loss", 2.0}}), std::invalid_argument);
  EXPECT_THROW(log.write(1, {{"step", 1.0}}), std::invalid_argument);
  EXPECT_TRUE(read_lines(dir / "metrics.jsonl").empty());
  test::remove_tree(dir);
}

}  // namespace
}  // namespace microdit::train
