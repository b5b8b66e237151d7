// util::resolve_device: the tools' --device and the trainer's run.device.
#include "microdit/util/device.h"

#include "test_support.h"

namespace microdit {
namespace {

TEST(Device, SpellingsOtherThanTheFourAreNamedWithTheFlag) {
  EXPECT_EQ(util::resolve_device("cpu", "--device"), at::Device(at::kCPU));
  EXPECT_EQ(util::resolve_device("auto", "--device").type(),
            util::cuda_available() ? at::kCUDA : at::kCPU);
  for (const std::string bad : {"tpu", "", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "cuda:99999"}) {
    EXPECT_TRUE(test::throws_with<std::invalid_argument>(
        [&] { util::resolve_device(bad, "--device"); },
        "--device is '" + bad + "', expected auto, cpu, cuda or cuda:N", {}))
        << bad;
  }
}

// LibTorch's own message for a missing GPU is a dispatcher error naming no flag.
TEST(Device, AGpuThatIsNotThereIsNamed) {
  EXPECT_TRUE(test::throws_with(
      [&] { util::resolve_device("cuda:99", "run.device"); }, "run.device is 'cuda:99' but ",
      {util::cuda_available() ? "CUDA device(s)" : "no CUDA device is available"}));
  if (!util::cuda_available()) {
    EXPECT_TRUE(test::throws_with([&] { util::resolve_device("cuda", "--device", 0); },
                                  "--device is 'cuda' but no CUDA device is available", {}));
    return;
  }
  EXPECT_EQ(util::resolve_device("cuda", "--device"), at::Device(at::kCUDA));
  EXPECT_EQ(util::resolve_device("cuda", "--device", 0), at::Device(at::kCUDA, 0));
  EXPECT_EQ(util::resolve_device("cuda:0", "--device", 5), at::Device(at::kCUDA, 0));
}

}  // namespace
}  // namespace microdit
