// The Inception-v3 feature extractor of FID (Heusel et al. 2017) as pytorch-fid implements it
// (pytorch_fid/inception.py, InceptionV3 with use_fid_inception=True, output block 3): the
// network of TensorFlow's FID code, ported to torchvision's Inception3 layout with four patches
// that reproduce TensorFlow's graph:
//   FIDInceptionA / FIDInceptionC / first FIDInceptionE  average pool without the padded zeros
//                                                        (count_include_pad=False)
//   second FIDInceptionE (Mixed_7c)                      max pool instead of average pool
// forward() maps images in [0, 1] to the 2048 features of the final average pool, the vectors
// whose statistics FID compares.
//
// Submodules and parameters carry the state-dict keys of pytorch-fid's weights file
// pt_inception-2015-12-05-6726825d.pth ("Mixed_6b.branch7x7_2.conv.weight", "....bn.running_var"),
// so that file loads unchanged; its 1008-class "fc" head is not needed for features.
//
// Legend: B batch, C channels, H x W image size.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <filesystem>

namespace microdit::eval {

// Conv (no bias) -> BatchNorm (eps 0.001, always with its running statistics) -> ReLU.
class BasicConv2dImpl : public torch::nn::Module {
 public:
  BasicConv2dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel,
                  int64_t stride = 1, std::array<int64_t, 2> padding = {0, 0});
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv2d);

// 35x35 block (Mixed_5b/5c/5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1, C -> 224 + pool.
class FIDInceptionAImpl : public torch::nn::Module {
 public:
  FIDInceptionAImpl(int64_t in_channels, int64_t pool_features);
  at::Tensor forward(const at::Tensor& x);

  BasicConv2d branch1x1{nullptr}, branch5x5_1{nullptr}, branch5x5_2{nullptr};
  BasicConv2d branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr}, branch3x3dbl_3{nullptr};
  BasicConv2d branch_pool{nullptr};
};
TORCH_MODULE(FIDInceptionA);

// Grid reduction 35 -> 17 (Mixed_6a, torchvision's InceptionB, unpatched): C -> C + 480.
class InceptionBImpl : public torch::nn::Module {
 public:
  explicit InceptionBImpl(int64_t in_channels);
  at::Tensor forward(const at::Tensor& x);

  BasicConv2d branch3x3{nullptr};
  BasicConv2d branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr}, branch3x3dbl_3{nullptr};
};
TORCH_MODULE(InceptionB);

// 17x17 block with factorised 7x7 convolutions (Mixed_6b..6e): C -> 768.
class FIDInceptionCImpl : public torch::nn::Module {
 public:
  FIDInceptionCImpl(int64_t in_channels, int64_t channels_7x7);
  at::Tensor forward(const at::Tensor& x);

  BasicConv2d branch1x1{nullptr};
  BasicConv2d branch7x7_1{nullptr}, branch7x7_2{nullptr}, branch7x7_3{nullptr};
  BasicConv2d branch7x7dbl_1{nullptr}, branch7x7dbl_2{nullptr}, branch7x7dbl_3{nullptr};
  BasicConv2d branch7x7dbl_4{nullptr}, branch7x7dbl_5{nullptr};
  BasicConv2d branch_pool{nullptr};
};
TORCH_MODULE(FIDInceptionC);

// Grid reduction 17 -> 8 (Mixed_7a, torchvision's InceptionD, unpatched): C -> C + 512.
class InceptionDImpl : public torch::nn::Module {
 public:
  explicit InceptionDImpl(int64_t in_channels);
  at::Tensor forward(const at::Tensor& x);

  BasicConv2d branch3x3_1{nullptr}, branch3x3_2{nullptr};
  BasicConv2d branch7x7x3_1{nullptr}, branch7x7x3_2{nullptr}, branch7x7x3_3{nullptr};
  BasicConv2d branch7x7x3_4{nullptr};
};
TORCH_MODULE(InceptionD);

// The pooling in front of an E block's branch_pool: FIDInceptionE_1 averages (without the
// padding), FIDInceptionE_2 takes the maximum.
enum class EPool { average, max };

// 8x8 block with expanded 1x3/3x1 branches (Mixed_7b, Mixed_7c): C -> 2048.
class FIDInceptionEImpl : public torch::nn::Module {
 public:
  FIDInceptionEImpl(int64_t in_channels, EPool pool);
  at::Tensor forward(const at::Tensor& x);

  EPool pool;
  BasicConv2d branch1x1{nullptr};
  BasicConv2d branch3x3_1{nullptr}, branch3x3_2a{nullptr}, branch3x3_2b{nullptr};
  BasicConv2d branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr};
  BasicConv2d branch3x3dbl_3a{nullptr}, branch3x3dbl_3b{nullptr};
  BasicConv2d branch_pool{nullptr};
};
TORCH_MODULE(FIDInceptionE);

// pytorch-fid's resize_input step: F.interpolate(images, (299, 299), bilinear,
// align_corners=False). (B,3,H,W) float -> (B,3,299,299).
at::Tensor resize_for_fid_inception(const at::Tensor& images);

class FIDInceptionV3Impl : public torch::nn::Module {
 public:
  static constexpr int64_t kInputSize = 299;
  static constexpr int64_t kFeatures = 2048;

  // Parameters do not require gradients (pytorch-fid's requires_grad=False); BatchNorm uses
  // its running statistics whatever train()/eval() say.
  FIDInceptionV3Impl();

  // (B,3,H,W) floating in [0, 1] -> (B,2048): resize to 299x299, scale to [-1, 1] by 2x - 1,
  // run the network, average-pool. Throws std::invalid_argument on another shape or dtype.
  at::Tensor forward(const at::Tensor& images);

  BasicConv2d Conv2d_1a_3x3{nullptr}, Conv2d_2a_3x3{nullptr}, Conv2d_2b_3x3{nullptr};
  BasicConv2d Conv2d_3b_1x1{nullptr}, Conv2d_4a_3x3{nullptr};
  FIDInceptionA Mixed_5b{nullptr}, Mixed_5c{nullptr}, Mixed_5d{nullptr};
  InceptionB Mixed_6a{nullptr};
  FIDInceptionC Mixed_6b{nullptr}, Mixed_6c{nullptr}, Mixed_6d{nullptr}, Mixed_6e{nullptr};
  InceptionD Mixed_7a{nullptr};
  FIDInceptionE Mixed_7b{nullptr}, Mixed_7c{nullptr};
};
TORCH_MODULE(FIDInceptionV3);

// Loads pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth, or the same tensors as
// .safetensors) strictly: every parameter and running statistic must be present with its
// shape. The classifier fc.weight/fc.bias and BatchNorm num_batches_tracked entries may be
// present or not and are ignored. Throws std::runtime_error starting with the file path and
// naming each missing, unexpected or misshapen key.
void load_fid_inception_weights(FIDInceptionV3& model, const std::filesystem::path& path);

}  // namespace microdit::eval
