// microdit-prepare's pipeline, as the official precompute.py: for every image-caption pair,
// clean the caption (data/caption_cleaner.h), resize the image's short side with PIL's bicubic
// and center-crop it at each resolution (image/resize.h), encode it with the VAE (a sample of the
// posterior times the scaling factor) and the caption with the CLIP text tower (all 77 token
// states), and store fp16 bytes in MDS shards with the official columns
//   caption (str), caption_latents (bytes, (77,D) fp16), latents_<res> (bytes, (C,res/8,res/8) fp16).
//
// Output layout: out/part-NNNNN/ (index.json, shards, prepare.json with the part's counts) for
// each part of data/prepare_sources.h, written under part-NNNNN.partial/ and renamed when
// complete, so an interrupted run resumes at the first incomplete part; out/index.json lists
// every part's shards (streaming's merge_index layout) once all parts are complete. Processes
// share the parts: process p of n takes parts p, p+n, p+2n, ...
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microdit/data/prepare_sources.h"
#include "microdit/encoders/pipeline.h"

namespace microdit::data {

struct PrepareOptions {
  std::vector<std::filesystem::path> inputs;
  std::filesystem::path out;
  SourceOptions sources;
  std::vector<int64_t> resolutions{256, 512};
  int64_t batch_size = 32;
  int64_t min_size = 0;            // skip images whose short side is smaller
  bool clean_captions = true;      // false: captions only stripped
  int64_t shard_size = int64_t{256} << 20;  // MDS size_limit, as the official writer
  int64_t seed = 2024;             // VAE sampling: seed + part index, per part
  int64_t num_processes = 1;
  int64_t process_index = 0;
  double progress_seconds = 30;
};

struct PrepareReport {
  int64_t parts = 0;           // all parts of the inputs
  int64_t parts_mine = 0;      // of which this process's
  int64_t parts_resumed = 0;   // already complete before this run
  int64_t samples_written = 0;  // by this run
  int64_t skipped = 0;          // by this run: unreadable, too small, or without caption
  bool merged = false;          // out/index.json written
};

PrepareReport prepare_dataset(const PrepareOptions& options, encoders::PipelineEncoders& encoders);

// Writes out/index.json over out/part-00000 .. part-(parts-1) when all are complete; returns
// whether it did.
bool merge_prepared_parts(const std::filesystem::path& out, int64_t parts);

}  // namespace microdit::data
