// Numbers from flags, environment variables, checkpoint metadata and file names: one line naming
// the value's source and range, never LibTorch's or the standard library's bare "stoll".
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "microdit/io/safetensors.h"
#include "microdit/train/checkpoint.h"
#include "microdit/util/parse_number.h"
#include "test_support.h"

namespace microdit {
namespace {

using test::throws_with;

TEST(ParseNumber, AcceptsWholeNumbersInRange) {
  EXPECT_EQ(util::parse_int("42", "--steps", 1), 42);
  EXPECT_EQ(util::parse_int("-7", "x"), -7);
  EXPECT_EQ(util::parse_int("9223372036854775807", "x"), INT64_MAX);
  EXPECT_EQ(util::parse_uint64("18446744073709551615", "seed"), UINT64_MAX);
  EXPECT_DOUBLE_EQ(util::parse_double("2.5e-3", "--cfg"), 2.5e-3);
}

TEST(ParseNumber, RefusesWithOneLineNamingTheSourceAndRange) {
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { util::parse_int("abc", "--steps", 1); },
                                                 "--steps is 'abc', expected an integer >= 1",
                                                 {}));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { util::parse_int("12x", "--steps"); },
                                                 "--steps is '12x', expected an integer", {}));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [] { util::parse_int("99999999999999999999", "n"); }, "n is '99999999999999999999'", {}));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { util::parse_int("0", "n", 1, 8); },
                                                 "n is '0', expected an integer in [1, 8]", {}));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { util::parse_uint64("-1", "seed"); },
                                                 "seed is '-1', expected an integer in [0, ", {}));
  for (const char* text : {"inf", "nan", "1e400", "", " 1"}) {
    EXPECT_TRUE(throws_with<std::invalid_argument>([&] { util::parse_double(text, "--cfg"); },
                                                   "--cfg is '", {"expected a finite number"}))
        << text;
  }
  // A hostile value is shown cut short, on one line.
  const std::string long_text = std::string(100, '7') + "\nnext line";
  try {
    util::parse_int(long_text, "n");
    ADD_FAILURE() << "did not throw";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_LT(message.size(), 100u) << message;
  }
}

// A training checkpoint whose metadata `key` is `value` (the rest valid).
std::filesystem::path checkpoint_with(const test::TempDir& dir, const std::string& key,
                                      const std::string& value) {
  std::map<std::string, std::string> meta{{"format", "microdit-train-checkpoint-1"},
                                          {"step", "3"},
                                          {"samples_seen", "12"},
                                          {"seed", "5"},
                                          {"optimizer_step", "3"},
                                          {"config", "{}"}};
  meta[key] = value;
  const auto path = dir.path / "checkpoint.safetensors";
  io::save_safetensors(path, {{"model.w", at::ones({2})}}, meta);
  return path;
}

TEST(CheckpointMetadata, EachValueIsCheckedWithItsKeyNamed) {
  test::TempDir dir("checkpoint-metadata");
  EXPECT_EQ(train::load_checkpoint(checkpoint_with(dir, "step", "3")).state.step, 3);
  const std::string file = (dir.path / "checkpoint.safetensors").string();
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { train::load_checkpoint(checkpoint_with(dir, "step", "abc")); },
      file + ": checkpoint metadata 'step' is 'abc', expected an integer >= 0", {}));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { train::load_checkpoint(checkpoint_with(dir, "samples_seen", "-4")); },
      file + ": checkpoint metadata 'samples_seen' is '-4'", {}));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { train::load_checkpoint(checkpoint_with(dir, "seed", "-1")); },
      file + ": checkpoint metadata 'seed' is '-1'", {}));
}

TEST(CheckpointMetadata, AStepNumberTooLargeInAFileNameIsNamed) {
  test::TempDir dir("checkpoint-name");
  std::filesystem::create_directories(dir.path / "checkpoints");
  io::save_safetensors(dir.path / "checkpoints" / "step-99999999999999999999.safetensors",
                       {{"w", at::ones({1})}});
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { train::latest_checkpoint(dir.path); },
      (dir.path / "checkpoints" / "step-99999999999999999999.safetensors").string() +
          ": the step in the file name is '99999999999999999999', expected an integer",
      {}));
}

}  // namespace
}  // namespace microdit
