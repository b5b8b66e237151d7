// Inception activations of a folder of images, the input of FID: generated images as they are,
// real images (COCO validation) resized on the short side with Pillow's bicubic and
// center-cropped to the generation resolution first, as the evaluation protocol asks.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microdit/eval/fid_inception.h"

namespace microdit::eval {

struct FolderOptions {
  int64_t resize_to = 0;   // 0: images as they are; else short side + center crop to this size
  int64_t batch_size = 50;
};

struct FolderActivations {
  at::Tensor activations;            // (N, 2048) float32, CPU, in sorted file order
  std::vector<std::string> skipped;  // "<file>: <reason>" for images that could not be read
};

// Image files (.png .jpg .jpeg .webp .bmp) directly in `dir`, sorted by name. Throws naming the
// folder when it does not exist or holds no images.
std::vector<std::filesystem::path> list_images(const std::filesystem::path& dir);

// Unreadable images are skipped and reported, not fatal. Images of different sizes are fed one
// size at a time (the network resizes each batch to 299 x 299).
FolderActivations folder_activations(FIDInceptionV3& net, const std::filesystem::path& dir,
                                     const FolderOptions& options, at::Device device);

}  // namespace microdit::eval
