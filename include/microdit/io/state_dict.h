// State dicts of LibTorch modules: every parameter and buffer under its dotted name
// ("blocks.3.mlp.w1.weight"), the names official PyTorch checkpoints use.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "microdit/io/tensor_map.h"

namespace microdit::io {

// Parameters and buffers of `module` and all its submodules, detached, sharing storage.
TensorMap state_dict(const torch::nn::Module& module);

struct LoadOptions {
  // Missing and unexpected keys are errors; shape mismatches are errors either way.
  bool strict = true;
  // Never loaded, never reported: may be absent from the map and are skipped if present.
  std::vector<std::string> ignore_keys;
};

// Checks every key and shape first and throws one std::runtime_error listing all problems,
// leaving the module untouched; otherwise copies each tensor in, converting dtype and device.
void load_state_dict(torch::nn::Module& module, const TensorMap& tensors,
                     const LoadOptions& options = {});

}  // namespace microdit::io
