// nn/sdp_backend: the attention backend switch, and that it changes which kernel runs.
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "microdit/nn/attention.h"
#include "microdit/nn/sdp_backend.h"
#include "microdit/util/kernel_profile.h"
#include "test_support.h"

namespace {
using microdit::nn::check_sdp_backend;
using microdit::nn::SdpBackendGuard;

// The ATen operators one attention call runs (CPU operators on the CPU).
std::vector<std::string> attention_ops(const at::Tensor& q) {
  std::vector<std::string> names;
  for (const auto& total : microdit::util::profile_kernels(
           [&] { microdit::nn::multi_head_attention(q, q, q, /*num_heads=*/4); }, false)) {
    names.push_back(total.name);
  }
  return names;
}

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(SdpBackend, GuardAllowsOneBackendThenRestores) {
  auto& context = at::globalContext();
  context.setSDPUseFlash(false);  // a state that "auto" would not restore by itself
  {
    const SdpBackendGuard guard("math");
    EXPECT_TRUE(context.userEnabledMathSDP());
    EXPECT_FALSE(context.userEnabledFlashSDP());
    EXPECT_FALSE(context.userEnabledMemEfficientSDP());
    EXPECT_FALSE(context.userEnabledCuDNNSDP());
  }
  EXPECT_FALSE(context.userEnabledFlashSDP());
  EXPECT_TRUE(context.userEnabledMathSDP());
  {
    const SdpBackendGuard guard("auto");
    EXPECT_TRUE(context.userEnabledFlashSDP());
    EXPECT_TRUE(context.userEnabledCuDNNSDP());
  }
  context.setSDPUseFlash(true);
}

TEST(SdpBackend, ChosenBackendRunsWithTheSameResult) {
  at::manual_seed(0);
  const auto q = at::randn({2, 64, 128});  // 4 heads of 32, 64 tokens
  at::Tensor math_out, flash_out;
  {
    const SdpBackendGuard guard("math");
    const auto ops = attention_ops(q);
    EXPECT_TRUE(has(ops, "aten::_scaled_dot_product_attention_math"));
    EXPECT_FALSE(has(ops, "aten::_scaled_dot_product_flash_attention_for_cpu"));
    math_out = microdit::nn::multi_head_attention(q, q, q, 4);
  }
  {
    const SdpBackendGuard guard("flash");
    const auto ops = attention_ops(q);
    EXPECT_TRUE(has(ops, "aten::_scaled_dot_product_flash_attention_for_cpu"));
    EXPECT_FALSE(has(ops, "aten::_scaled_dot_product_attention_math"));
    flash_out = microdit::nn::multi_head_attention(q, q, q, 4);
  }
  EXPECT_LT(microdit::test::max_relative(flash_out, math_out), 1e-5);
}

TEST(SdpBackend, NamedErrors) {
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA);
  EXPECT_NO_THROW(check_sdp_backend("flash", cpu, "optim.attention_backend"));
  EXPECT_NO_THROW(check_sdp_backend("cudnn", cuda, "optim.attention_backend"));
  EXPECT_THROW(
      {
        try {
          check_sdp_backend("flashy", cpu, "optim.attention_backend");
        } catch (const std::invalid_argument& e) {
          EXPECT_STREQ(e.what(),
                       "optim.attention_backend: unknown attention backend 'flashy' (one of auto, "
                       "cudnn, flash, efficient, math)");
          throw;
        }
      },
      std::invalid_argument);
  EXPECT_THROW(
      {
        try {
          check_sdp_backend("cudnn", cpu, "--attention");
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("'cudnn' needs CUDA"), std::string::npos)
              << e.what();
          throw;
        }
      },
      std::invalid_argument);
  EXPECT_THROW(SdpBackendGuard("flashy"), std::invalid_argument);
}
}  // namespace
