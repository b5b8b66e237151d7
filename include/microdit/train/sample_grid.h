// The sample grids of a training run (run.sample_every, and one at the end): the prompts of
// `sample.*` rendered by the model being trained, as the official LogDiffusionImages callback.
// - Built-in data: the fixed prompt set (or sample.prompts) embedded by the built-in caption
//   embedder; the sampler's output is the image (its pixels are the latents); the fixed set is
//   scored by prompt match (colours, shape and both, data/prompt_match.h).
// - Latent data: the prompts embedded once at start-up by the CLIP text tower, which is freed
//   again (or read from sample.caption_embeddings), the samples decoded by the VAE one image at a
//   time. Image i is rendered by rank i mod W and gathered to rank 0, one image per rank and
//   collective, so that no rank waits longer than one image's sampling at a collective.
// Image i starts from noise seeded sample.seed + i (diffusion/text_to_image.h), so a grid does
// not depend on the number of processes.
// Legend: N prompts, L caption tokens, Cy caption channels.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "microdit/data/builtin_shapes.h"
#include "microdit/encoders/autoencoder_kl.h"
#include "microdit/model/microdit.h"
#include "microdit/train/config.h"
#include "microdit/train/process_group.h"

namespace microdit::train {

struct SampleGridImages {
  at::Tensor images;  // (N,3,H,W) float32 in [0,1] on the CPU; undefined but on rank 0
  // Built-in data with its fixed prompts: how the images match them.
  std::optional<data::PromptMatch> prompt_match;
};

class SampleGrid {
 public:
  // Whether `config` makes sample grids: always on built-in data, with sample.vae on latent data.
  static bool configured(const TrainConfig& config);

  // Reads the prompts, embeds them and loads the VAE onto `device`; `builtin` is the run's
  // dataset when data.kind is builtin. Every problem (a missing file, weights of another
  // architecture, embeddings or latents of another width than the model's) is a
  // std::runtime_error of one line naming the sample.* key.
  SampleGrid(const TrainConfig& config, const model::DiTConfig& dit, at::Device device, bool bf16,
             const data::BuiltinShapes* builtin);

  int64_t size() const { return captions_.size(0); }
  const std::vector<std::string>& prompts() const { return prompts_; }
  // (N,L,Cy) float32 on the device.
  const at::Tensor& caption_embeddings() const { return captions_; }

  // Renders the grid with `dit` as it is (callers swap in the EMA weights); every rank calls it
  // on latent data, rank 0 alone on built-in data. `group` is null in a world of one.
  SampleGridImages render(model::DiT& dit, ProcessGroup* group, int64_t rank, int64_t world_size);

 private:
  SampleGridImages render_builtin(model::DiT& dit);
  SampleGridImages render_latent(model::DiT& dit, ProcessGroup* group, int64_t rank,
                                 int64_t world_size);

  SampleSection options_;
  diffusion::EDMConfig edm_;
  at::Device device_;
  bool bf16_ = false;
  std::vector<std::string> prompts_;
  at::Tensor captions_;                             // (N,L,Cy)
  const data::BuiltinShapes* builtin_ = nullptr;    // built-in data
  std::optional<std::vector<data::PromptReading>> expected_;  // the fixed prompts' contents
  encoders::AutoencoderKL vae_{nullptr};            // latent data
  at::ScalarType vae_dtype_ = at::kFloat;
};

// sample.prompts, or the lines of sample.prompts_file (a missing or empty file is a
// std::runtime_error of one line naming the key).
std::vector<std::string> read_sample_prompts(const SampleSection& sample);

// sample.caption_embeddings: a safetensors file whose tensor `caption_embeddings` is (N,L,Cy),
// one row per prompt. A run that embeds its prompts with the text tower writes them so to
// run.dir/samples/caption_embeddings.safetensors, for later runs without the text tower.
void save_caption_embeddings(const std::filesystem::path& path, const at::Tensor& captions);
at::Tensor load_caption_embeddings(const std::filesystem::path& path);

}  // namespace microdit::train
