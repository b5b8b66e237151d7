// The feature extractor of clean-fid's "clean" FID mode (Parmar et al. 2022, cleanfid/fid.py
// with mode="clean", cleanfid/inception_torchscript.py InceptionV3W with resize_inside=False):
//   1. each channel of each image resized to 299 x 299 by Pillow's bicubic on a float32 ('F')
//      image, not quantized back to uint8, then clipped to [0, 255];
//   2. (x - 128) / 128;
//   3. the `layers` submodule of NVIDIA's TorchScript Inception-v3 (inception-2015-12-05.pt, the
//      network of TensorFlow's FID code), giving the 2048 pool features.
// The TorchScript file is the user's (it cannot be downloaded here); any scripted module with a
// `layers` submodule mapping (B,3,299,299) to B*2048 values loads.
//
// Legend: B batch, C = 3 channels, H x W image size.
#pragma once
#include <ATen/ATen.h>
#include <torch/script.h>

#include <filesystem>
#include <string>

namespace microdit::eval {

class CleanFIDInception {
 public:
  static constexpr int64_t kSize = 299;       // the network's input size
  static constexpr int64_t kFeatures = 2048;  // pool3 features

  // Loads the TorchScript file and takes its `layers`, in eval mode, on `device`. Throws
  // std::runtime_error naming the file when it cannot be loaded or has no `layers` submodule.
  explicit CleanFIDInception(const std::filesystem::path& file, at::Device device = at::kCPU);

  // (B,3,H,W) images with values in [0, 255] (uint8 or floating, any device) -> (B,2048)
  // float32 on the network's device. The resize runs on the CPU.
  at::Tensor operator()(const at::Tensor& images);

 private:
  std::string file_;
  torch::jit::Module layers_;
  at::Device device_;
};

// clean-fid's resize of one image: (3,H,W) in [0, 255] -> (3,299,299) float32, CPU.
at::Tensor clean_fid_resize(const at::Tensor& image);

}  // namespace microdit::eval
