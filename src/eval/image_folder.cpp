#include "microdit/eval/image_folder.h"

#include <c10/util/StringUtil.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "microdit/data/prepare_sources.h"
#include "microdit/image/decode.h"
#include "microdit/image/resize.h"
#include "microdit/util/error_message.h"

namespace microdit::eval {
namespace fs = std::filesystem;
namespace {

// (3,H,W) uint8.
at::Tensor load_image(const fs::path& path, int64_t resize_to) {
  at::Tensor image = image::read_image_rgb(path);  // (H,W,3) uint8
  if (resize_to > 0)
    image = image::center_crop(image::resize_short_side(image, resize_to), resize_to);
  return image.permute({2, 0, 1}).contiguous();
}

}  // namespace

std::vector<fs::path> list_images(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(c10::str(dir.string(), ": no such folder"));
  std::vector<fs::path> files;
  for (const auto& item : fs::directory_iterator(dir)) {
    if (item.is_regular_file() && data::is_image_file(item.path())) {
      files.push_back(item.path());
    }
  }
  if (files.empty()) throw std::runtime_error(c10::str(dir.string(), ": no images in this folder"));
  std::sort(files.begin(), files.end());
  return files;
}

FolderActivations folder_activations(const FeatureExtractor& extract, const fs::path& dir,
                                     const FolderOptions& options) {
  return file_activations(extract, list_images(dir), options, dir.string());
}

FolderActivations file_activations(const FeatureExtractor& extract,
                                   const std::vector<fs::path>& files,
                                   const FolderOptions& options, const std::string& what) {
  at::NoGradGuard no_grad;
  FolderActivations out;
  std::vector<at::Tensor> features, pending;
  int64_t pending_bytes = 0;
  auto flush = [&] {
    if (pending.empty()) return;
    features.push_back(extract(at::stack(pending)).to(at::kCPU, at::kFloat));
    pending.clear();
    pending_bytes = 0;
  };
  for (const auto& file : files) {
    at::Tensor image;
    try {
      image = load_image(file, options.resize_to);
    } catch (const std::exception& e) {
      out.skipped.push_back(util::error_message(e));
      spdlog::warn("skipping {}", util::error_message(e));
      continue;
    }
    const auto bytes = static_cast<int64_t>(image.nbytes());
    if (!pending.empty() && (pending.front().sizes() != image.sizes() ||
                             pending_bytes + bytes > options.max_batch_bytes)) {
      flush();
    }
    pending.push_back(image);
    pending_bytes += bytes;
    if (static_cast<int64_t>(pending.size()) == options.batch_size) flush();
  }
  flush();
  if (features.empty()) throw std::runtime_error(c10::str(what, ": no readable images"));
  out.activations = at::cat(features);
  return out;
}

}  // namespace microdit::eval
