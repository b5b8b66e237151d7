// The official precomputed-latents data (as micro_diffusion's dataset preparation writes it) as a
// Dataset: one or several MDS directories, concatenated in the given order (index = position in
// that concatenation), each with the columns
//   caption_latents  (L,Cy) fp16, raw bytes     text-encoder outputs, L=77 Cy=1024 officially
//   latents_<res>    (C,res/8,res/8) fp16 bytes  scaled VAE latents, C=4 officially
// Columns stored as `ndarray` of any float dtype and matching element count are read too.
// get() returns float32 copies.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microdit/data/dataset.h"
#include "microdit/data/mds.h"

namespace microdit::data {

struct MDSLatentDatasetOptions {
  int64_t resolution = 256;         // image size in pixels: reads latents_<resolution>
  int64_t latent_size = 0;          // H = W; 0: resolution / 8 (the SDXL VAE's factor)
  int64_t latent_channels = 4;      // C
  int64_t caption_tokens = 77;      // L
  int64_t caption_channels = 1024;  // Cy
  std::string caption_column = "caption_latents";
  std::string latents_column;  // default "latents_<resolution>"
  MDSReaderOptions reader;
};

class MDSLatentDataset : public Dataset {
 public:
  // Throws std::invalid_argument for no directories, a negative latent_size, or (latent_size 0)
  // a resolution that is not a positive multiple of 8;
  // std::runtime_error naming the directory when it cannot be read, lacks a column, stores one
  // in an encoding other than bytes/ndarray or with a fixed size that does not match the shape,
  // or when all directories together hold no samples.
  explicit MDSLatentDataset(const std::vector<std::filesystem::path>& directories,
                            const MDSLatentDatasetOptions& options = {});

  int64_t size() const override { return starts_.back(); }
  // Throws std::out_of_range for a bad index, std::runtime_error naming the shard file, sample
  // and column when a value's byte length does not match the configured shape.
  Sample get(int64_t index) const override;

  const std::vector<MDSReader>& readers() const { return readers_; }
  const std::string& latents_column() const { return latents_column_; }
  std::vector<int64_t> latent_shape() const;   // (C,H,W)
  std::vector<int64_t> caption_shape() const;  // (L,Cy)

 private:
  MDSLatentDatasetOptions options_;
  std::string latents_column_;
  std::vector<MDSReader> readers_;
  std::vector<int64_t> starts_;  // samples before directory k; back() = total
};

}  // namespace microdit::data
