// Parity with the official implementation on tests/data/reference/microdit-official-tiny (tensors
// the official code computed): the same checks microdit-check-reference runs, from both weight
// files, with the model built reference and built fast.
#include <gtest/gtest.h>

#include "microdit/model/block_plan.h"
#include "microdit/model/microdit.h"
#include "microdit/model/state_dict_shapes.h"
#include "microdit/nn/execution.h"
#include "test_support.h"

namespace microdit {
namespace {

class ReferenceParity
    : public ::testing::TestWithParam<std::tuple<std::string, nn::ExecutionMode>> {};

TEST_P(ReferenceParity, EveryCaseWithinItsBound) {
  const auto& ref = test::reference_set();
  const auto& [weights, execution] = GetParam();
  const auto results = parity::check_reference(ref, {weights, at::kCPU, false, execution});
  int grads = 0;
  for (const auto& r : results) {
    EXPECT_TRUE(r.passed()) << r.name << ": relative error " << r.error << " > " << r.bound;
    grads += r.name.rfind("grad.", 0) == 0 ? 1 : 0;
  }
  // Every parameter's gradient is compared, not just those that happen to exist.
  model::DiT dit(ref.config);
  EXPECT_EQ(grads, static_cast<int>(dit->parameters().size()));
  for (const char* name : {"pos_embed", "out_nomask", "out_masked", "out_cfg", "edm_loss_nomask",
                           "edm_loss_masked", "sample_steps4_cfg1", "sample_steps4_cfg"}) {
    EXPECT_TRUE(
        std::any_of(results.begin(), results.end(), [&](const auto& r) { return r.name == name; }))
        << "case " << name << " was not checked";
  }
}

INSTANTIATE_TEST_SUITE_P(WeightFilesAndExecution, ReferenceParity,
                         ::testing::Combine(::testing::Values("weights.safetensors", "weights.pt"),
                                            ::testing::Values(nn::ExecutionMode::reference,
                                                              nn::ExecutionMode::fast)));

TEST(ReferenceParity, RelativeErrorDetectsADifference) {
  auto ref = at::ones({3, 4}, at::kDouble);
  EXPECT_EQ(parity::relative_error(ref, ref), 0.0);
  auto off = ref.clone();
  off[0][0] = 1.1;
  EXPECT_NEAR(parity::relative_error(off, ref), 0.1 / std::sqrt(12.0), 1e-12);
  EXPECT_TRUE(std::isinf(parity::relative_error(at::ones({2}), ref)));
}

TEST(ReferenceParity, ParameterCountMatchesTheOfficialModel) {
  const auto& ref = test::reference_set();
  model::DiT dit(ref.config);
  EXPECT_EQ(dit->num_parameters(), 871392);  // config.json "params"
  EXPECT_EQ(model::count_parameters(ref.config), 871392);
}

TEST(ReferenceParity, LayerwiseRatiosAreNumpyLinspace) {
  // The reference config holds numpy.linspace(0.5, 4.0, 6) as numpy printed it.
  const auto& c = test::reference_set().config;
  EXPECT_EQ(model::numpy_linspace(0.5, 4.0, 6), c.ffn_multipliers);
  EXPECT_EQ(model::numpy_linspace(0.5, 1.0, 6), c.qkv_multipliers);
}

}  // namespace
}  // namespace microdit
