// Parameter count of a DiTConfig computed from the architecture, without building the model
// (an XL model is 4.7 GB of float32 weights).
#pragma once
#include <cstdint>

#include "microdit/model/config.h"

namespace microdit::model {

int64_t count_parameters(const DiTConfig& config);

}  // namespace microdit::model
