#include "microdit/util/device.h"

#include <ATen/Context.h>

#ifdef MICRODIT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace microdit::util {

bool cuda_available() { return at::globalContext().hasCUDA(); }

std::string default_device_name() { return cuda_available() ? "cuda" : "cpu"; }

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
