#include "microdit/nn/fused_kernels.h"

namespace microdit::nn {

bool fused_kernels_built() {
#ifdef MICRODIT_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

}  // namespace microdit::nn
