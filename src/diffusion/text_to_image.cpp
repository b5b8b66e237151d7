#include "microdit/diffusion/text_to_image.h"

#include <fmt/format.h>

#include <sstream>

#include "microdit/diffusion/edm_sampler.h"
#include "microdit/io/png.h"
#include "microdit/io/read_file.h"
#include "microdit/nn/autocast.h"

namespace microdit::diffusion {
namespace {

// Far above any list of prompts a person writes; a wrong path (a dataset, an image) is refused
// before it is read.
constexpr uint64_t kMaxPromptFileBytes = 64 << 20;

// Starting latents of images first..first+n-1: one seeded CPU draw per image.
at::Tensor initial_latents(const model::DiTConfig& c, int64_t first, int64_t n, uint64_t seed) {
  std::vector<at::Tensor> draws;
  for (int64_t i = first; i < first + n; ++i) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed + static_cast<uint64_t>(i));
    draws.push_back(at::randn({c.in_channels, c.input_size, c.input_size}, generator, at::kFloat));
  }
  return at::stack(draws);
}

}  // namespace

at::Tensor captions_to_images(model::DiT& dit, const at::Tensor& y, int64_t first_index,
                              encoders::AutoencoderKL& vae, at::ScalarType vae_dtype,
                              const TextToImageOptions& options, const EDMConfig& edm) {
  at::NoGradGuard no_grad;
  dit->eval();
  const auto device = y.device();
  const at::Tensor init = initial_latents(dit->config, first_index, y.size(0), options.seed);
  SamplerOptions sampler;
  sampler.num_steps = options.steps;
  sampler.cfg = options.cfg;
  at::Tensor latents;
  {
    nn::AutocastGuard autocast(device.type(), at::kBFloat16, options.bf16 && device.is_cuda());
    latents = edm_sample(dit, init.to(device), y.to(at::kFloat), sampler, edm);
  }
  std::vector<at::Tensor> images;
  for (int64_t i = 0; i < latents.size(0); ++i) {
    const at::Tensor decoded = vae->decode_latents(latents.narrow(0, i, 1).to(vae_dtype));
    images.push_back((decoded.to(at::kFloat) / 2 + 0.5).clamp(0, 1).cpu());
  }
  return at::cat(images);
}

at::Tensor text_to_image(model::DiT& dit, encoders::PipelineEncoders& encoders,
                         const std::vector<std::string>& prompts, const TextToImageOptions& options,
                         const EDMConfig& edm) {
  TORCH_CHECK(options.batch_size > 0, "text_to_image: batch size must be positive");
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> images;
  for (int64_t start = 0; start < static_cast<int64_t>(prompts.size()); start += options.batch_size) {
    const auto n = std::min<int64_t>(options.batch_size, static_cast<int64_t>(prompts.size()) - start);
    const std::vector<std::string> batch(prompts.begin() + start, prompts.begin() + start + n);
    images.push_back(captions_to_images(dit, encoders.encode_captions(batch), start, encoders.vae,
                                        encoders.dtype, options, edm));
  }
  return at::cat(images);
}

std::vector<std::string> read_prompt_file(const std::filesystem::path& path) {
  std::istringstream in(io::read_file(path, kMaxPromptFileBytes, "a prompt file"));
  std::vector<std::string> prompts;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) {
      throw std::runtime_error(fmt::format("{}:{}: empty prompt line", path.string(), n));
    }
    prompts.push_back(line);
  }
  if (prompts.empty()) throw std::runtime_error(path.string() + ": no prompts");
  return prompts;
}

std::filesystem::path generated_image_path(const std::filesystem::path& dir, int64_t index) {
  return dir / fmt::format("{:05d}.png", index);
}

void write_generated_images(const std::filesystem::path& dir, const at::Tensor& images,
                            int64_t first_index) {
  std::filesystem::create_directories(dir);
  for (int64_t i = 0; i < images.size(0); ++i) {
    io::write_png(generated_image_path(dir, first_index + i),
                  io::make_grid(images.narrow(0, i, 1), 1, 0));
  }
}

}  // namespace microdit::diffusion
