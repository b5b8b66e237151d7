// Inception activations of a folder of images, the input of FID: generated images as they are,
// real images (COCO validation) resized on the short side with Pillow's bicubic and
// center-cropped to the generation resolution first, as the evaluation protocol asks.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace microdit::eval {

// A FID network behind one signature, so a folder is read the same way for every mode:
// (B,3,H,W) uint8 images, CPU -> (B,2048) features on any device. Each mode resizes to 299
// itself (pytorch-fid: bilinear inside the network; clean-fid: Pillow float bicubic).
using FeatureExtractor = std::function<at::Tensor(const at::Tensor& images)>;

struct FolderOptions {
  int64_t resize_to = 0;  // 0: images as they are; else short side + center crop to this size
  int64_t batch_size = 50;
  // The most bytes of images held for one batch: a batch of large photos at full size would
  // otherwise take batch_size times their size, and that again as floats in the network.
  int64_t max_batch_bytes = int64_t{1} << 30;
};

struct FolderActivations {
  at::Tensor activations;            // (N, 2048) float32, CPU, in sorted file order
  std::vector<std::string> skipped;  // "<file>: <reason>" for images that could not be read
};

// Image files (.png .jpg .jpeg .webp .bmp) directly in `dir`, sorted by name. Throws naming the
// folder when it does not exist or holds no images.
std::vector<std::filesystem::path> list_images(const std::filesystem::path& dir);

// Unreadable images are skipped and reported, not fatal. Images of different sizes are fed one
// size at a time.
FolderActivations folder_activations(const FeatureExtractor& features,
                                     const std::filesystem::path& dir,
                                     const FolderOptions& options);
// The same over a list of files (e.g. the real images of the COCO protocol's captions); `what`
// names the set in the error when none is readable.
FolderActivations file_activations(const FeatureExtractor& features,
                                   const std::vector<std::filesystem::path>& files,
                                   const FolderOptions& options, const std::string& what);

}  // namespace microdit::eval
