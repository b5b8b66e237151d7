// Device helpers that work with both the CPU and the CUDA build of LibTorch.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace microdit::util {

bool cuda_available();
std::string default_device_name();  // "cuda" when a GPU is visible, else "cpu"

// The device `name` names (auto, cpu, cuda or cuda:N; auto: cuda when a GPU is visible), checked
// against the GPUs there are, with errors naming `what` (the flag or config key). A plain "cuda"
// becomes cuda:`local_rank` when local_rank >= 0: one GPU per process under torchrun or srun.
at::Device resolve_device(const std::string& name, const std::string& what,
                          int64_t local_rank = -1);
void synchronize(const at::Device& device);
void reset_peak_memory(const at::Device& device);
void empty_cache(const at::Device& device);  // returns cached GPU blocks to the driver
int64_t peak_memory_bytes(const at::Device& device);  // 0 on CPU
// Whether the device's current stream has run everything queued on it (always true on CPU).
bool device_idle(const at::Device& device);

}  // namespace microdit::util
