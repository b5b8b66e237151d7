#include "microdit/nn/sdp_backend.h"

#include <ATen/Context.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <stdexcept>

namespace microdit::nn {
namespace {
using Flags = std::array<bool, 4>;  // cudnn, flash, efficient, math

Flags current_flags() {
  const auto& context = at::globalContext();
  return {context.userEnabledCuDNNSDP(), context.userEnabledFlashSDP(),
          context.userEnabledMemEfficientSDP(), context.userEnabledMathSDP()};
}

void set_flags(const Flags& flags) {
  auto& context = at::globalContext();
  context.setSDPUseCuDNN(flags[0]);
  context.setSDPUseFlash(flags[1]);
  context.setSDPUseMemEfficient(flags[2]);
  context.setSDPUseMath(flags[3]);
}

Flags flags_of(const std::string& name) {
  const auto& names = sdp_backend_names();  // auto, then the order of Flags
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) {
    throw std::invalid_argument(
        fmt::format("unknown attention backend '{}' (one of {})", name, fmt::join(names, ", ")));
  }
  if (it == names.begin()) return {true, true, true, true};
  Flags flags{};
  flags[static_cast<std::size_t>(it - names.begin() - 1)] = true;
  return flags;
}
}  // namespace

const std::vector<std::string>& sdp_backend_names() {
  static const std::vector<std::string> names{"auto", "cudnn", "flash", "efficient", "math"};
  return names;
}

void check_sdp_backend(const std::string& name, const c10::Device& device,
                       const std::string& where) {
  try {
    flags_of(name);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where + ": " + e.what());
  }
  // ATen's CPU attention has the flash (a blocked CPU kernel) and math backends only.
  if (!device.is_cuda() && (name == "cudnn" || name == "efficient")) {
    throw std::invalid_argument(
        fmt::format("{}: attention backend '{}' needs CUDA; on {} use auto, flash or math", where,
                    name, device.str()));
  }
}

SdpBackendGuard::SdpBackendGuard(const std::string& name) : previous_(current_flags()) {
  set_flags(flags_of(name));
}

SdpBackendGuard::~SdpBackendGuard() { set_flags(previous_); }

}  // namespace microdit::nn
