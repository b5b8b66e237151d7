// clean-fid's "clean" mode feature extractor (see clean_fid_inception.h).
#include "microdit/eval/clean_fid_inception.h"

#include <c10/util/StringUtil.h>

#include <stdexcept>
#include <vector>

#include "microdit/image/resize.h"
#include "microdit/util/error_message.h"

namespace microdit::eval {
namespace {

[[noreturn]] void fail(const std::string& file, const std::string& problem) {
  throw std::runtime_error(c10::str(file, ": ", problem));
}

torch::jit::Module load_layers(const std::string& file, at::Device device) {
  torch::jit::Module base;
  try {
    base = torch::jit::load(file, device);
  } catch (const std::exception& e) {
    fail(file, c10::str("cannot load as a TorchScript module (clean mode needs clean-fid's ",
                        "inception-2015-12-05.pt): ", util::error_message(e)));
  }
  if (!base.hasattr("layers") || !base.attr("layers").isModule()) {
    fail(file,
         "TorchScript module has no `layers` submodule (expected clean-fid's "
         "inception-2015-12-05.pt)");
  }
  torch::jit::Module layers = base.attr("layers").toModule();
  layers.eval();
  return layers;
}

}  // namespace

at::Tensor clean_fid_resize(const at::Tensor& image) {
  // (H,W,3) float32: the per-channel 'F' resize, channels being independent.
  const at::Tensor hwc = image.to(at::kCPU, at::kFloat).permute({1, 2, 0});
  const auto size = CleanFIDInception::kSize;
  return image::pil_resize_bicubic_float(hwc, size, size).clamp(0, 255).permute({2, 0, 1});
}

CleanFIDInception::CleanFIDInception(const std::filesystem::path& file, at::Device device)
    : file_(file.string()), layers_(load_layers(file_, device)), device_(device) {}

at::Tensor CleanFIDInception::operator()(const at::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3) {
    throw std::invalid_argument(
        c10::str("clean-fid features expect (B,3,H,W) images, got ", images.sizes()));
  }
  at::NoGradGuard no_grad;
  const int64_t B = images.size(0);
  std::vector<at::Tensor> resized;
  for (int64_t b = 0; b < B; ++b) resized.push_back(clean_fid_resize(images[b]));
  const at::Tensor x = at::stack(resized).to(device_).sub(128).div(128);  // (B,3,299,299)
  const at::Tensor out = layers_.forward({x}).toTensor();
  if (out.numel() != B * kFeatures) {
    fail(file_, c10::str("`layers` gave ", out.sizes(), " for ", B, " images; expected (", B,
                         ",2048) values"));
  }
  return out.reshape({B, kFeatures}).to(at::kFloat);
}

}  // namespace microdit::eval
