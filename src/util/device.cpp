#include "microdit/util/device.h"

#include <ATen/Context.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#ifdef MICRODIT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace microdit::util {

bool cuda_available() { return at::globalContext().hasCUDA(); }

std::string default_device_name() { return cuda_available() ? "cuda" : "cpu"; }

at::Device resolve_device(const std::string& name, const std::string& what, int64_t local_rank) {
  const std::string spelled = name == "auto" ? default_device_name() : name;
  const std::string prefix = "cuda:";
  const std::string index = spelled.starts_with(prefix) ? spelled.substr(prefix.size()) : "";
  const bool cuda_index = !index.empty() && index.size() <= 4 &&
                          index.find_first_not_of("0123456789") == std::string::npos;
  if (spelled != "cpu" && spelled != "cuda" && !cuda_index) {
    throw std::invalid_argument(what + " is '" + name + "', expected auto, cpu, cuda or cuda:N");
  }
  if (spelled == "cpu") return at::kCPU;
  if (!cuda_available()) {
    throw std::runtime_error(what + " is '" + name + "' but no CUDA device is available");
  }
  int64_t count = 0;
#ifdef MICRODIT_WITH_CUDA
  count = c10::cuda::device_count();
#endif
  const int64_t wanted = cuda_index ? std::stoll(index) : std::max<int64_t>(local_rank, 0);
  if (wanted >= count) {
    throw std::runtime_error(what + " is '" + name + "' but this machine has " +
                             std::to_string(count) + " CUDA device(s)" +
                             (cuda_index ? "" : " (LOCAL_RANK " + std::to_string(wanted) + ")"));
  }
  if (!cuda_index && local_rank < 0) return at::kCUDA;
  return {at::kCUDA, static_cast<c10::DeviceIndex>(wanted)};
}

void synchronize(const at::Device& device) {
#ifdef MICRODIT_WITH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#endif
}

void reset_peak_memory(const at::Device& device) {
#ifdef MICRODIT_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
  }
#endif
}

void empty_cache(const at::Device& device) {
#ifdef MICRODIT_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

int64_t peak_memory_bytes(const at::Device& device) {
#ifdef MICRODIT_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    return stats.allocated_bytes[0].peak;  // aggregate over pool types
  }
#endif
  return 0;
}

bool device_idle(const at::Device& device) {
#ifdef MICRODIT_WITH_CUDA
  if (device.is_cuda()) {
    return c10::cuda::getCurrentCUDAStream(device.has_index() ? device.index() : -1).query();
  }
#endif
  return true;
}

}  // namespace microdit::util
