// pytorch-fid's FID Inception-v3 (see fid_inception.h).
#include "microdit/eval/fid_inception.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/io/torch_checkpoint.h"

namespace microdit::eval {

namespace {

constexpr double kBatchNormEps = 0.001;  // TensorFlow's value, kept by torchvision and pytorch-fid

// TensorFlow's average pool divides by the number of real pixels under the window; this is the
// FID patch of the A, C and first E blocks.
at::Tensor average_pool_3x3(const at::Tensor& x) {
  return at::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, /*ceil_mode=*/false,
                        /*count_include_pad=*/false);
}

at::Tensor max_pool_3x3_stride2(const at::Tensor& x) { return at::max_pool2d(x, {3, 3}, {2, 2}); }

// ModuleHolder's forwarding constructor cannot take braced kernel/padding lists; this can.
BasicConv2d conv_bn(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel,
                    int64_t stride = 1, std::array<int64_t, 2> padding = {0, 0}) {
  return BasicConv2d(
      std::make_shared<BasicConv2dImpl>(in_channels, out_channels, kernel, stride, padding));
}

}  // namespace

BasicConv2dImpl::BasicConv2dImpl(int64_t in_channels, int64_t out_channels,
                                 std::array<int64_t, 2> kernel, int64_t stride,
                                 std::array<int64_t, 2> padding) {
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels,
                                                         {kernel[0], kernel[1]})
                                    .stride(stride)
                                    .padding(torch::ExpandingArray<2>({padding[0], padding[1]}))
                                    .bias(false)));
  bn = register_module(
      "bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out_channels).eps(kBatchNormEps)));
}

at::Tensor BasicConv2dImpl::forward(const at::Tensor& x) {
  // FID features come from the frozen network: running statistics even in train() mode.
  at::Tensor y = at::batch_norm(conv->forward(x), bn->weight, bn->bias, bn->running_mean,
                                bn->running_var, /*training=*/false, /*momentum=*/0.0,
                                kBatchNormEps, /*cudnn_enabled=*/true);
  return at::relu_(y);
}

FIDInceptionAImpl::FIDInceptionAImpl(int64_t in_channels, int64_t pool_features) {
  branch1x1 = register_module("branch1x1", conv_bn(in_channels, 64, {1, 1}));
  branch5x5_1 = register_module("branch5x5_1", conv_bn(in_channels, 48, {1, 1}));
  branch5x5_2 = register_module("branch5x5_2", conv_bn(48, 64, {5, 5}, 1, {2, 2}));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", conv_bn(in_channels, 64, {1, 1}));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", conv_bn(64, 96, {3, 3}, 1, {1, 1}));
  branch3x3dbl_3 = register_module("branch3x3dbl_3", conv_bn(96, 96, {3, 3}, 1, {1, 1}));
  branch_pool = register_module("branch_pool", conv_bn(in_channels, pool_features, {1, 1}));
}

at::Tensor FIDInceptionAImpl::forward(const at::Tensor& x) {
  at::Tensor b5x5 = branch5x5_2(branch5x5_1(x));
  at::Tensor b3x3dbl = branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)));
  return at::cat({branch1x1(x), b5x5, b3x3dbl, branch_pool(average_pool_3x3(x))}, 1);
}

InceptionBImpl::InceptionBImpl(int64_t in_channels) {
  branch3x3 = register_module("branch3x3", conv_bn(in_channels, 384, {3, 3}, 2));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", conv_bn(in_channels, 64, {1, 1}));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", conv_bn(64, 96, {3, 3}, 1, {1, 1}));
  branch3x3dbl_3 = register_module("branch3x3dbl_3", conv_bn(96, 96, {3, 3}, 2));
}

at::Tensor InceptionBImpl::forward(const at::Tensor& x) {
  at::Tensor b3x3dbl = branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)));
  return at::cat({branch3x3(x), b3x3dbl, max_pool_3x3_stride2(x)}, 1);
}

FIDInceptionCImpl::FIDInceptionCImpl(int64_t in_channels, int64_t channels_7x7) {
  const int64_t c7 = channels_7x7;
  branch1x1 = register_module("branch1x1", conv_bn(in_channels, 192, {1, 1}));
  branch7x7_1 = register_module("branch7x7_1", conv_bn(in_channels, c7, {1, 1}));
  branch7x7_2 = register_module("branch7x7_2", conv_bn(c7, c7, {1, 7}, 1, {0, 3}));
  branch7x7_3 = register_module("branch7x7_3", conv_bn(c7, 192, {7, 1}, 1, {3, 0}));
  branch7x7dbl_1 = register_module("branch7x7dbl_1", conv_bn(in_channels, c7, {1, 1}));
  branch7x7dbl_2 = register_module("branch7x7dbl_2", conv_bn(c7, c7, {7, 1}, 1, {3, 0}));
  branch7x7dbl_3 = register_module("branch7x7dbl_3", conv_bn(c7, c7, {1, 7}, 1, {0, 3}));
  branch7x7dbl_4 = register_module("branch7x7dbl_4", conv_bn(c7, c7, {7, 1}, 1, {3, 0}));
  branch7x7dbl_5 = register_module("branch7x7dbl_5", conv_bn(c7, 192, {1, 7}, 1, {0, 3}));
  branch_pool = register_module("branch_pool", conv_bn(in_channels, 192, {1, 1}));
}

at::Tensor FIDInceptionCImpl::forward(const at::Tensor& x) {
  at::Tensor b7x7 = branch7x7_3(branch7x7_2(branch7x7_1(x)));
  at::Tensor b7x7dbl = branch7x7dbl_1(x);
  b7x7dbl = branch7x7dbl_3(branch7x7dbl_2(b7x7dbl));
  b7x7dbl = branch7x7dbl_5(branch7x7dbl_4(b7x7dbl));
  return at::cat({branch1x1(x), b7x7, b7x7dbl, branch_pool(average_pool_3x3(x))}, 1);
}

InceptionDImpl::InceptionDImpl(int64_t in_channels) {
  branch3x3_1 = register_module("branch3x3_1", conv_bn(in_channels, 192, {1, 1}));
  branch3x3_2 = register_module("branch3x3_2", conv_bn(192, 320, {3, 3}, 2));
  branch7x7x3_1 = register_module("branch7x7x3_1", conv_bn(in_channels, 192, {1, 1}));
  branch7x7x3_2 = register_module("branch7x7x3_2", conv_bn(192, 192, {1, 7}, 1, {0, 3}));
  branch7x7x3_3 = register_module("branch7x7x3_3", conv_bn(192, 192, {7, 1}, 1, {3, 0}));
  branch7x7x3_4 = register_module("branch7x7x3_4", conv_bn(192, 192, {3, 3}, 2));
}

at::Tensor InceptionDImpl::forward(const at::Tensor& x) {
  at::Tensor b3x3 = branch3x3_2(branch3x3_1(x));
  at::Tensor b7x7x3 = branch7x7x3_4(branch7x7x3_3(branch7x7x3_2(branch7x7x3_1(x))));
  return at::cat({b3x3, b7x7x3, max_pool_3x3_stride2(x)}, 1);
}

FIDInceptionEImpl::FIDInceptionEImpl(int64_t in_channels, EPool pool) : pool(pool) {
  branch1x1 = register_module("branch1x1", conv_bn(in_channels, 320, {1, 1}));
  branch3x3_1 = register_module("branch3x3_1", conv_bn(in_channels, 384, {1, 1}));
  branch3x3_2a = register_module("branch3x3_2a", conv_bn(384, 384, {1, 3}, 1, {0, 1}));
  branch3x3_2b = register_module("branch3x3_2b", conv_bn(384, 384, {3, 1}, 1, {1, 0}));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", conv_bn(in_channels, 448, {1, 1}));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", conv_bn(448, 384, {3, 3}, 1, {1, 1}));
  branch3x3dbl_3a = register_module("branch3x3dbl_3a", conv_bn(384, 384, {1, 3}, 1, {0, 1}));
  branch3x3dbl_3b = register_module("branch3x3dbl_3b", conv_bn(384, 384, {3, 1}, 1, {1, 0}));
  branch_pool = register_module("branch_pool", conv_bn(in_channels, 192, {1, 1}));
}

at::Tensor FIDInceptionEImpl::forward(const at::Tensor& x) {
  at::Tensor b3x3 = branch3x3_1(x);
  b3x3 = at::cat({branch3x3_2a(b3x3), branch3x3_2b(b3x3)}, 1);
  at::Tensor b3x3dbl = branch3x3dbl_2(branch3x3dbl_1(x));
  b3x3dbl = at::cat({branch3x3dbl_3a(b3x3dbl), branch3x3dbl_3b(b3x3dbl)}, 1);
  // Mixed_7c's max pool is a quirk of TensorFlow's FID graph that the weights were trained with.
  at::Tensor pooled = pool == EPool::average ? average_pool_3x3(x)
                                             : at::max_pool2d(x, {3, 3}, {1, 1}, {1, 1});
  return at::cat({branch1x1(x), b3x3, b3x3dbl, branch_pool(pooled)}, 1);
}

at::Tensor resize_for_fid_inception(const at::Tensor& images) {
  const int64_t size = FIDInceptionV3Impl::kInputSize;
  return at::upsample_bilinear2d(images, {size, size}, /*align_corners=*/false);
}

FIDInceptionV3Impl::FIDInceptionV3Impl() {
  Conv2d_1a_3x3 = register_module("Conv2d_1a_3x3", conv_bn(3, 32, {3, 3}, 2));
  Conv2d_2a_3x3 = register_module("Conv2d_2a_3x3", conv_bn(32, 32, {3, 3}));
  Conv2d_2b_3x3 = register_module("Conv2d_2b_3x3", conv_bn(32, 64, {3, 3}, 1, {1, 1}));
  Conv2d_3b_1x1 = register_module("Conv2d_3b_1x1", conv_bn(64, 80, {1, 1}));
  Conv2d_4a_3x3 = register_module("Conv2d_4a_3x3", conv_bn(80, 192, {3, 3}));
  Mixed_5b = register_module("Mixed_5b", FIDInceptionA(192, 32));
  Mixed_5c = register_module("Mixed_5c", FIDInceptionA(256, 64));
  Mixed_5d = register_module("Mixed_5d", FIDInceptionA(288, 64));
  Mixed_6a = register_module("Mixed_6a", InceptionB(288));
  Mixed_6b = register_module("Mixed_6b", FIDInceptionC(768, 128));
  Mixed_6c = register_module("Mixed_6c", FIDInceptionC(768, 160));
  Mixed_6d = register_module("Mixed_6d", FIDInceptionC(768, 160));
  Mixed_6e = register_module("Mixed_6e", FIDInceptionC(768, 192));
  Mixed_7a = register_module("Mixed_7a", InceptionD(768));
  Mixed_7b = register_module("Mixed_7b", FIDInceptionE(1280, EPool::average));
  Mixed_7c = register_module("Mixed_7c", FIDInceptionE(2048, EPool::max));
  for (at::Tensor& parameter : parameters()) parameter.requires_grad_(false);
  eval();
}

at::Tensor FIDInceptionV3Impl::forward(const at::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3 || !images.is_floating_point()) {
    throw std::invalid_argument(c10::str("FIDInceptionV3: expected (B,3,H,W) floating images in "
                                         "[0, 1], got ", images.sizes(), " ", images.dtype()));
  }
  at::Tensor x = resize_for_fid_inception(images) * 2 - 1;
  x = Conv2d_2b_3x3(Conv2d_2a_3x3(Conv2d_1a_3x3(x)));
  x = Conv2d_4a_3x3(Conv2d_3b_1x1(max_pool_3x3_stride2(x)));
  x = Mixed_5d(Mixed_5c(Mixed_5b(max_pool_3x3_stride2(x))));
  x = Mixed_6e(Mixed_6d(Mixed_6c(Mixed_6b(Mixed_6a(x)))));
  x = Mixed_7c(Mixed_7b(Mixed_7a(x)));
  return at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
}

namespace {

io::TensorMap read_weights(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".safetensors") return io::load_safetensors(path);
  if (ext == ".pth" || ext == ".pt" || ext == ".bin") return io::load_torch_state_dict(path);
  throw std::runtime_error(c10::str(path.string(), ": unknown weight format '", ext,
                                    "' (expected .pth, .pt, .bin or .safetensors)"));
}

// The weights file carries the 1008-class classifier, which features do not use, and may or
// may not carry BatchNorm's step counters, which eval-mode BatchNorm does not read.
std::vector<std::string> optional_keys(const FIDInceptionV3Impl& model) {
  std::vector<std::string> keys = {"fc.weight", "fc.bias"};
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    if (item.key().ends_with("num_batches_tracked")) keys.push_back(item.key());
  }
  return keys;
}

}  // namespace

void load_fid_inception_weights(FIDInceptionV3& model, const std::filesystem::path& path) {
  const io::TensorMap tensors = read_weights(path);
  io::LoadOptions options;
  options.ignore_keys = optional_keys(*model);
  try {
    io::load_state_dict(*model, tensors, options);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(c10::str(path.string(), ": FID Inception-v3 ", e.what()));
  }
}

}  // namespace microdit::eval
