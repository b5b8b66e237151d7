// Tests for the tools' flags of the execution switches (nn/execution_flags.h).
#include <gtest/gtest.h>

#include <sstream>

#include "microdit/nn/execution_flags.h"

namespace microdit::nn {
namespace {

TEST(ExecutionFlags, EachFlagSetsItsSwitch) {
  ExecutionOptions o;
  for (const char* flag :
       {"--fp32-norm", "--fused-norm", "--fused-residual", "--recompute-act", "--moe-rows",
        "--fused-combine", "--fused-dispatch", "--fold-residual", "--fp32-wgrad", "--split-qk-norm",
        "--one-pass-norm-grad", "--merged-swiglu"}) {
    EXPECT_TRUE(set_execution_flag(flag, o)) << flag;
  }
  EXPECT_FALSE(o.low_precision_norm);
  EXPECT_TRUE(o.fused_norm);
  EXPECT_TRUE(o.fused_residual);
  EXPECT_TRUE(o.recompute_activations);
  EXPECT_TRUE(o.moe_row_dispatch);
  EXPECT_TRUE(o.fused_combine);
  EXPECT_TRUE(o.fused_dispatch);
  EXPECT_TRUE(o.fold_residual_grad);
  EXPECT_TRUE(o.fp32_weight_grads);
  EXPECT_TRUE(o.split_qk_norm);
  EXPECT_TRUE(o.one_pass_norm_grad);
  EXPECT_TRUE(o.merged_swiglu);
  EXPECT_NO_THROW(check_execution_flags(o));
}

// The options that run inside the fused norm are refused without it, by name.
TEST(ExecutionFlags, FusedNormOptionsWithoutTheFusedNormAreRefusedByName) {
  for (const std::string flag : {"--fold-residual", "--split-qk-norm", "--one-pass-norm-grad"}) {
    ExecutionOptions o;
    ASSERT_TRUE(set_execution_flag(flag, o));
    try {
      check_execution_flags(o);
      ADD_FAILURE() << flag << " without --fused-norm was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(flag + " needs --fused-norm"), std::string::npos)
          << e.what();
    }
    ASSERT_TRUE(set_execution_flag("--fused-norm", o));
    EXPECT_NO_THROW(check_execution_flags(o));
  }
}

TEST(ExecutionFlags, OtherArgumentsAreNotTheirs) {
  ExecutionOptions o;
  for (const char* arg : {"--fused", "--batch", "fused-norm", "--fused-norm=1", ""}) {
    EXPECT_FALSE(set_execution_flag(arg, o)) << arg;
  }
  EXPECT_EQ(execution_flags_of(o), "");
}

// The flags named back give the same switches: what microdit-check-reference prints with its
// result reproduces the run.
TEST(ExecutionFlags, FlagsOfOptionsGiveTheOptionsBack) {
  ExecutionOptions o;
  o.fused_norm = true;
  o.moe_row_dispatch = true;
  o.low_precision_norm = false;
  const std::string flags = execution_flags_of(o);
  EXPECT_EQ(flags, "--fp32-norm --fused-norm --moe-rows");
  ExecutionOptions back;
  std::istringstream words(flags);
  for (std::string w; words >> w;) ASSERT_TRUE(set_execution_flag(w, back)) << w;
  EXPECT_EQ(execution_flags_of(back), flags);
  EXPECT_EQ(back.fused_residual, o.fused_residual);
}

TEST(ExecutionFlags, UsageListsEveryFlagOnItsOwnLine) {
  const std::string usage = "\n" + execution_flags_usage();
  for (const char* flag :
       {"--fp32-norm ", "--fused-norm ", "--fused-residual ", "--recompute-act ", "--moe-rows ",
        "--fused-combine ", "--fused-dispatch ", "--fold-residual ", "--fp32-wgrad ",
        "--split-qk-norm ", "--one-pass-norm-grad ", "--merged-swiglu "}) {
    EXPECT_NE(usage.find(std::string("\n  ") + flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace microdit::nn
