// Tests for the Composer learning-rate schedules on the global step counter.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "microdit/train/lr_schedule.h"

namespace microdit::train {
namespace {

// Stage 1 of the official recipe: warm-up 2.5K, cosine to 0.33x at 250K.
ScheduleOptions stage1() { return {"cosine_with_warmup", 2500, 0.33, 250000}; }

double cosine(double alpha_f, double frac) {
  return alpha_f + (1 - alpha_f) * (1 + std::cos(std::numbers::pi * frac)) / 2;
}

TEST(LrSchedule, ConstantIsOneEverywhere) {
  const ScheduleOptions constant{"constant", 0, 0.0, 0};
  for (int64_t t : {0, 1, 1000, 249999}) EXPECT_EQ(lr_factor(constant, t), 1.0);
}

TEST(LrSchedule, StageTwoContinuesTheCounterAtConstantLr) {
  const ScheduleOptions constant{"constant", 0, 0.0, 0};
  for (int64_t t = 250000; t <= 280000; t += 5000) EXPECT_EQ(lr_factor(constant, t), 1.0);
}

TEST(LrSchedule, ConstantWithWarmupRampsFromZero) {
  const ScheduleOptions stage3{"constant_with_warmup", 500, 0.0, 0};
  EXPECT_EQ(lr_factor(stage3, 0), 0.0);  // the first update runs at lr 0
  EXPECT_DOUBLE_EQ(lr_factor(stage3, 1), 1.0 / 500);
  EXPECT_DOUBLE_EQ(lr_factor(stage3, 250), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(stage3, 499), 499.0 / 500);
  EXPECT_EQ(lr_factor(stage3, 500), 1.0);
  EXPECT_EQ(lr_factor(stage3, 50000), 1.0);
}

TEST(LrSchedule, ConstantWithoutWarmupStepsIsConstant) {
  EXPECT_EQ(lr_factor({"constant_with_warmup", 0, 0.0, 0}, 0), 1.0);
}

TEST(LrSchedule, CosineWarmupIsLinearFromZero) {
  EXPECT_EQ(lr_factor(stage1(), 0), 0.0);
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), 1), 1.0 / 2500);
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), 1250), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), 2499), 2499.0 / 2500);
}

TEST(LrSchedule, CosineDecaysFromOneToAlphaF) {
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), 2500), 1.0);  // end of warm-up: cos(0)
  const int64_t mid = 2500 + (250000 - 2500) / 2;
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), mid), (1 + 0.33) / 2);  // cos(pi / 2) = 0
  const int64_t quarter = 2500 + (250000 - 2500) / 4;
  EXPECT_NEAR(lr_factor(stage1(), quarter), cosine(0.33, 0.25), 1e-12);
  EXPECT_NEAR(lr_factor(stage1(), 100000), cosine(0.33, (100000.0 - 2500) / 247500), 1e-12);
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), 250000), 0.33);
  EXPECT_DOUBLE_EQ(lr_factor(stage1(), 280000), 0.33);  // min(1, ...) holds it past t_max
}

TEST(LrSchedule, CosineIsMonotoneAfterWarmup) {
  double previous = 2.0;
  for (int64_t t = 2500; t <= 250000; t += 2475) {
    const double f = lr_factor(stage1(), t);
    EXPECT_LE(f, previous) << "t = " << t;
    previous = f;
  }
}

TEST(LrSchedule, CosineWithoutWarmupStartsAtOne) {
  const ScheduleOptions no_warmup{"cosine_with_warmup", 0, 0.1, 100};
  EXPECT_DOUBLE_EQ(lr_factor(no_warmup, 0), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(no_warmup, 50), 0.55);
  EXPECT_DOUBLE_EQ(lr_factor(no_warmup, 100), 0.1);
}

TEST(LrSchedule, UnknownKindIsNamed) {
  try {
    lr_factor({"linear_decay", 0, 0.0, 0}, 3);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("linear_decay"), std::string::npos) << e.what();
  }
}

TEST(LrSchedule, InvalidSettingsAreRejected) {
  EXPECT_THROW(lr_factor({"cosine_with_warmup", 100, 0.0, 100}, 0), std::invalid_argument);
  EXPECT_THROW(lr_factor({"constant_with_warmup", -1, 0.0, 0}, 0), std::invalid_argument);
  EXPECT_THROW(lr_factor({"constant", 0, 0.0, 0}, -1), std::invalid_argument);
}

}  // namespace
}  // namespace microdit::train
