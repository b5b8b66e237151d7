// Which kernel at::scaled_dot_product_attention may run. ATen takes the first backend of its
// order that accepts the inputs.
// MicroDiT's sequences are short (64 tokens per image in the masked backbone, 256 in the patch
// mixer, 77 caption tokens), where the kernels differ in wasted tile rows and per-call cost, so
// the choice is measured (docs/performance.md) rather than assumed. The switch is ATen's own,
// process-wide, as torch.backends.cuda.enable_*_sdp in Python.
#pragma once
#include <c10/core/Device.h>

#include <array>
#include <string>
#include <vector>

namespace microdit::nn {

// "auto" (ATen's choice), then the backends that can be the only one allowed.
const std::vector<std::string>& sdp_backend_names();

// Throws std::invalid_argument naming `where` when `name` is not a backend, or is one that
// `device` has no kernel for (cudnn and efficient are CUDA-only; flash and math run anywhere).
void check_sdp_backend(const std::string& name, const c10::Device& device,
                       const std::string& where);

// Allows only `name`'s backend ("auto": all of them) while it lives, then restores the flags.
class SdpBackendGuard {
 public:
  explicit SdpBackendGuard(const std::string& name);
  ~SdpBackendGuard();
  SdpBackendGuard(const SdpBackendGuard&) = delete;
  SdpBackendGuard& operator=(const SdpBackendGuard&) = delete;

 private:
  std::array<bool, 4> previous_;  // cudnn, flash, efficient, math
};

}  // namespace microdit::nn
