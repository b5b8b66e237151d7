#include "microdit/data/safetensors_shards.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <stdexcept>

#include "microdit/io/safetensors.h"

namespace microdit::data {

namespace fs = std::filesystem;

namespace {

std::string key_list(const io::TensorMap& tensors) {
  std::string out;
  for (const auto& [key, tensor] : tensors) out += (out.empty() ? "" : ", ") + key;
  return out.empty() ? "none" : out;
}

std::vector<fs::path> list_shards(const fs::path& directory) {
  std::error_code error;
  if (!fs::is_directory(directory, error)) {
    throw std::runtime_error(c10::str(directory.string(), ": no such dataset directory"));
  }
  std::vector<fs::path> paths;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
      paths.push_back(entry.path());
    }
  }
  if (paths.empty()) {
    throw std::runtime_error(c10::str(directory.string(), ": no *.safetensors shards"));
  }
  std::sort(paths.begin(), paths.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
  return paths;
}

at::Tensor take(io::TensorMap& tensors, const std::string& key, const fs::path& path) {
  auto it = tensors.find(key);
  if (it == tensors.end()) {
    throw std::runtime_error(
        c10::str(path.string(), ": no tensor \"", key, "\" (tensors: ", key_list(tensors), ")"));
  }
  if (!at::isFloatingType(it->second.scalar_type())) {
    throw std::runtime_error(c10::str(path.string(), ": tensor \"", key, "\" has dtype ",
                                      it->second.scalar_type(), ", expected a float dtype"));
  }
  return it->second;
}

}  // namespace

SafetensorsShards::SafetensorsShards(const fs::path& directory,
                                     const SafetensorsShardsOptions& options)
    : paths_(list_shards(directory)), offsets_{0} {
  const auto& lk = options.latents_key;
  const auto& ck = options.caption_key;
  for (const auto& path : paths_) {
    auto fail = [&](const std::string& problem) {
      throw std::runtime_error(c10::str(path.string(), ": ", problem));
    };
    auto tensors = io::load_safetensors(path);
    Shard shard{take(tensors, lk, path), take(tensors, ck, path)};
    if (shard.latents.dim() != 4) {
      fail(c10::str("tensor \"", lk, "\" has shape ", io::shape_string(shard.latents.sizes()),
                    ", expected (N,C,H,W)"));
    }
    if (shard.captions.dim() == 4 && shard.captions.size(1) == 1) {
      shard.captions = shard.captions.squeeze(1);
    } else if (shard.captions.dim() != 3) {
      fail(c10::str("tensor \"", ck, "\" has shape ", io::shape_string(shard.captions.sizes()),
                    ", expected (N,L,Cy) or (N,1,L,Cy)"));
    }
    if (shard.latents.size(0) != shard.captions.size(0)) {
      fail(c10::str("tensor \"", lk, "\" has ", shard.latents.size(0), " samples but \"", ck,
                    "\" has ", shard.captions.size(0)));
    }
    auto check_like_first = [&](const std::string& key, const at::Tensor& tensor,
                                const at::Tensor& first) {
      if (tensor.sizes().slice(1) != first.sizes().slice(1)) {
        fail(c10::str("tensor \"", key, "\" has per-sample shape ",
                      io::shape_string(tensor.sizes().slice(1)), " but ", paths_.front().string(),
                      " has ", io::shape_string(first.sizes().slice(1))));
      }
    };
    if (!shards_.empty()) {
      check_like_first(lk, shard.latents, shards_.front().latents);
      check_like_first(ck, shard.captions, shards_.front().captions);
    }
    offsets_.push_back(offsets_.back() + shard.latents.size(0));
    shards_.push_back(std::move(shard));
  }
  if (size() == 0) {
    throw std::runtime_error(c10::str(directory.string(), ": the shards hold no samples"));
  }
}

Sample SafetensorsShards::get(int64_t index) const {
  check_index(index, size(), "safetensors shards");
  // The shard k with offsets_[k] <= index < offsets_[k+1].
  const auto k = std::upper_bound(offsets_.begin(), offsets_.end(), index) - offsets_.begin() - 1;
  const Shard& shard = shards_[k];
  const int64_t row = index - offsets_[k];
  auto to_float = [](const at::Tensor& t) {
    return t.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  };
  return {to_float(shard.latents[row]), to_float(shard.captions[row])};
}

std::vector<int64_t> SafetensorsShards::latent_shape() const {
  return shards_.front().latents.sizes().slice(1).vec();
}

std::vector<int64_t> SafetensorsShards::caption_shape() const {
  return shards_.front().captions.sizes().slice(1).vec();
}

}  // namespace microdit::data
