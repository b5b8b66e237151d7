// Prompts to images, as the official LatentDiffusion.generate: tokenize and encode each prompt
// with the CLIP text tower (no caption cleaning at sampling time), run the EDM Heun sampler with
// classifier-free guidance (all-zero caption as the unconditional input), decode the latents
// with the VAE and map [-1, 1] to [0, 1].
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microdit/diffusion/edm_precond.h"
#include "microdit/encoders/pipeline.h"
#include "microdit/model/microdit.h"

namespace microdit::diffusion {

struct TextToImageOptions {
  int64_t steps = 30;
  double cfg = 5.0;  // guidance scale; 1 = unguided
  uint64_t seed = 0;
  int64_t batch_size = 8;
  // bf16 autocast around the DiT on CUDA (the sampler keeps x and sigma in float64); the DiT's
  // LayerNorms follow its execution setting (nn/execution.h).
  bool bf16 = true;
};

// (N,3,H,W) float32 in [0,1] on the CPU, one image per prompt, H = W = latent size * the VAE's
// factor. Image i starts from standard-normal latents drawn by a CPU generator seeded seed + i,
// so an image depends on its prompt, its index and the seed, not on the batch size (with
// S_churn > 0 the churn noise is drawn per batch).
at::Tensor text_to_image(model::DiT& dit, encoders::PipelineEncoders& encoders,
                         const std::vector<std::string>& prompts, const TextToImageOptions& options,
                         const EDMConfig& edm);

// The same from caption embeddings y (N, L, D) on the VAE's device: images first_index ..
// first_index + N - 1 of a prompt list (their starting noise as above), sampled together and
// decoded one at a time (the decoder's activations at 512 px dwarf the DiT's).
at::Tensor captions_to_images(model::DiT& dit, const at::Tensor& y, int64_t first_index,
                              encoders::AutoencoderKL& vae, at::ScalarType vae_dtype,
                              const TextToImageOptions& options, const EDMConfig& edm);

// A prompt file: one prompt per line (a trailing \r dropped). A blank line, an empty file or an
// unreadable one is a std::runtime_error naming the file (and the line).
std::vector<std::string> read_prompt_file(const std::filesystem::path& path);

// Where generated image `index` lives in `dir`: NNNNN.png, as microdit-sample writes them and
// microdit-eval reads them back.
std::filesystem::path generated_image_path(const std::filesystem::path& dir, int64_t index);

// Writes images (N,3,H,W) in [0,1] as generated images first_index, first_index + 1, ...
void write_generated_images(const std::filesystem::path& dir, const at::Tensor& images,
                            int64_t first_index = 0);

}  // namespace microdit::diffusion
