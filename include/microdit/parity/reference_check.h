// Parity with the official implementation: run our model on a reference set (tensors the official
// code computed, e.g. tests/data/reference/microdit-official-tiny) and measure each case's
// relative error ||ours - ref|| / ||ref||.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/io/tensor_map.h"
#include "microdit/model/config.h"
#include "microdit/nn/execution.h"

namespace microdit::parity {

struct ReferenceSet {
  std::filesystem::path dir;
  model::DiTConfig config;
  diffusion::EDMConfig edm;
  double mask_ratio = 0.0;
  double cfg_scale = 1.0;
  int64_t sampler_steps = 0;
  io::TensorMap cases;
};

// Reads config.json and cases.safetensors; throws naming the missing file or key.
ReferenceSet load_reference_set(const std::filesystem::path& dir);

struct CheckOptions {
  std::string weights_file = "weights.safetensors";  // or "weights.pt"
  at::Device device = at::kCPU;
  bool bf16_autocast = false;  // report-only: bounds are for float32
  // How the model runs; under bf16 autocast its LayerNorms run in bf16, as the official training.
  nn::ExecutionMode execution = nn::ExecutionMode::reference;
};

struct CaseResult {
  std::string name;  // e.g. "out_nomask", "grad.blocks.0.attn.qkv.weight"
  double error;      // relative L2 error
  double bound;
  bool passed() const { return error <= bound; }
};

double relative_error(const at::Tensor& ours, const at::Tensor& ref);

std::vector<CaseResult> check_reference(const ReferenceSet& ref, const CheckOptions& options);

}  // namespace microdit::parity
