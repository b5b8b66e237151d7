// A dataset of precomputed (image latents, caption embeddings) pairs stored as a directory of
// *.safetensors shards, read in file-name order. Each shard holds
//   <latents_key>  (N,C,H,W)                  any float dtype
//   <caption_key>  (N,L,Cy) or (N,1,L,Cy)     any float dtype
// with the same per-sample shapes in every shard. All shards are loaded into memory; get()
// converts to float32.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microdit/data/dataset.h"

namespace microdit::data {

struct SafetensorsShardsOptions {
  std::string latents_key = "latents";
  std::string caption_key = "caption_latents";
};

class SafetensorsShards : public Dataset {
 public:
  // Throws std::runtime_error, naming the directory or shard and the problem, when the
  // directory is missing or holds no shards or no samples, a shard lacks a key, its tensors
  // have the wrong rank, a non-float dtype or different sample counts, or its per-sample
  // shapes differ from those of the first shard.
  explicit SafetensorsShards(const std::filesystem::path& directory,
                             const SafetensorsShardsOptions& options = {});

  int64_t size() const override { return offsets_.back(); }
  Sample get(int64_t index) const override;

  const std::vector<std::filesystem::path>& shard_paths() const { return paths_; }
  std::vector<int64_t> latent_shape() const;   // (C,H,W)
  std::vector<int64_t> caption_shape() const;  // (L,Cy)

 private:
  struct Shard {
    at::Tensor latents;   // (N,C,H,W), stored dtype
    at::Tensor captions;  // (N,L,Cy), stored dtype
  };
  std::vector<std::filesystem::path> paths_;
  std::vector<Shard> shards_;
  std::vector<int64_t> offsets_;  // offsets_[k] = samples before shard k; back() = total
};

}  // namespace microdit::data
