#include "microdit/train/sample_grid.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "microdit/data/prompt_match.h"
#include "microdit/diffusion/edm_sampler.h"
#include "microdit/diffusion/text_to_image.h"
#include "microdit/encoders/pipeline.h"
#include "microdit/io/safetensors.h"
#include "microdit/util/error_message.h"

namespace microdit::train {
namespace {

constexpr const char* kEmbeddingsName = "caption_embeddings";

}  // namespace

bool SampleGrid::configured(const TrainConfig& config) {
  return config.data.kind == "builtin" || !config.sample.vae.empty();
}

std::vector<std::string> read_sample_prompts(const SampleSection& sample) {
  if (sample.prompts_file.empty()) return sample.prompts;
  return util::in_context("sample.prompts_file",
                   [&] { return diffusion::read_prompt_file(sample.prompts_file); });
}

void save_caption_embeddings(const std::filesystem::path& path, const at::Tensor& captions) {
  io::save_safetensors(path, {{kEmbeddingsName, captions.to(at::kFloat).cpu().contiguous()}});
}

at::Tensor load_caption_embeddings(const std::filesystem::path& path) {
  const io::TensorMap tensors = io::load_safetensors(path);
  const auto it = tensors.find(kEmbeddingsName);
  if (it == tensors.end() || it->second.dim() != 3 || !it->second.is_floating_point()) {
    throw std::runtime_error(fmt::format(
        "{}: expected a float tensor '{}' of shape (prompts, tokens, caption channels)",
        path.string(), kEmbeddingsName));
  }
  return it->second.to(at::kFloat);
}

SampleGrid::SampleGrid(const TrainConfig& config, const model::DiTConfig& dit, at::Device device,
                       bool bf16, const data::BuiltinShapes* builtin)
    : options_(config.sample), edm_(config.edm), device_(device), bf16_(bf16), builtin_(builtin) {
  prompts_ = read_sample_prompts(options_);
  if (builtin_) {
    if (prompts_.empty()) {
      std::vector<data::PromptReading> expected;
      for (const auto& p : data::fixed_prompts(builtin_->options().palette)) {
        prompts_.push_back(p.text);
        expected.push_back(p.reading());
      }
      expected_ = std::move(expected);
    }
    std::vector<at::Tensor> rows;
    for (const auto& p : prompts_) rows.push_back(builtin_->embedder().embed(p));
    captions_ = at::stack(rows);
    return;
  }
  // The encoders in bf16 on CUDA, as microdit-sample and the official runs.
  const at::ScalarType dtype = encoders::pipeline_dtype("auto", device);
  const auto& s = options_;
  if (!s.text_encoder.empty()) {
    captions_ = util::in_context("sample.text_encoder", [&] {
      const encoders::EncoderFiles files{{}, s.text_encoder, s.text_config, s.tokenizer};
      return encoders::encode_prompts_once(files, prompts_, device, dtype);
    });
  } else {
    captions_ = util::in_context("sample.caption_embeddings",
                          [&] { return load_caption_embeddings(s.caption_embeddings); })
                    .to(device);
    if (prompts_.empty()) {
      for (int64_t i = 0; i < captions_.size(0); ++i) prompts_.push_back(fmt::format("#{}", i));
    } else if (static_cast<int64_t>(prompts_.size()) != captions_.size(0)) {
      throw std::runtime_error(fmt::format(
          "sample.caption_embeddings: {} holds {} caption embeddings, sample.prompts has {} "
          "prompts",
          s.caption_embeddings, captions_.size(0), prompts_.size()));
    }
  }
  if (captions_.size(-1) != dit.caption_channels) {
    const bool tower = !s.text_encoder.empty();
    throw std::runtime_error(fmt::format(
        "{}: {} gives caption embeddings {} wide, the model's caption_channels is {}",
        tower ? "sample.text_encoder" : "sample.caption_embeddings",
        tower ? s.text_encoder : s.caption_embeddings, captions_.size(-1), dit.caption_channels));
  }
  vae_ = util::in_context("sample.vae",
                          [&] { return encoders::load_pipeline_vae(s.vae, device, dtype); });
  vae_dtype_ = dtype;
  if (vae_->config().latent_channels != dit.in_channels) {
    throw std::runtime_error(fmt::format(
        "sample.vae: {} has {} latent channels, the model's in_channels is {}", s.vae,
        vae_->config().latent_channels, dit.in_channels));
  }
}

SampleGridImages SampleGrid::render(model::DiT& dit, ProcessGroup* group, int64_t rank,
                                    int64_t world_size) {
  at::NoGradGuard no_grad;
  const bool was_training = dit->is_training();
  SampleGridImages result =
      builtin_ ? (rank == 0 ? render_builtin(dit) : SampleGridImages{})
               : render_latent(dit, group, rank, world_size);
  dit->train(was_training);
  return result;
}

// All prompts in one batch from one generator's draw, as the built-in demo always did.
SampleGridImages SampleGrid::render_builtin(model::DiT& dit) {
  dit->eval();
  const auto& c = dit->config;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
  auto init = at::randn({size(), c.in_channels, c.input_size, c.input_size}, generator);
  diffusion::SamplerOptions so;
  so.num_steps = options_.steps;
  so.cfg = options_.cfg;
  const auto y = captions_.unsqueeze(1).to(device_);
  const auto images = diffusion::edm_sample(dit, init.to(device_), y, so, edm_).cpu();
  SampleGridImages result;
  if (expected_) {
    result.prompt_match = data::prompt_match(images, *expected_, builtin_->palette_rgb());
  }
  result.images = (images.clamp(-1, 1) + 1) / 2;
  return result;
}

SampleGridImages SampleGrid::render_latent(model::DiT& dit, ProcessGroup* group, int64_t rank,
                                           int64_t world_size) {
  diffusion::TextToImageOptions options;
  options.steps = options_.steps;
  options.cfg = options_.cfg;
  options.seed = static_cast<uint64_t>(options_.seed);
  options.bf16 = bf16_;
  const int64_t side = dit->config.input_size * vae_->config().downsample_factor();
  const int64_t n = size();
  std::vector<at::Tensor> images;
  for (int64_t first = 0; first < n; first += world_size) {
    const int64_t i = first + rank;
    at::Tensor mine = i < n ? diffusion::captions_to_images(dit, captions_.narrow(0, i, 1), i, vae_,
                                                            vae_dtype_, options, edm_)
                            : at::zeros({1, 3, side, side});
    if (group == nullptr) {
      images.push_back(mine);
      continue;
    }
    // One image from each rank; the gap of the last round is sent as zeros and dropped.
    auto input = mine.to(device_).flatten();
    auto output = at::empty({world_size * input.numel()}, input.options());
    group->all_gather(output, input, fmt::format("gather of sample image {}", first));
    if (rank != 0) continue;
    const auto gathered = output.view({world_size, 3, side, side}).cpu();
    images.push_back(gathered.narrow(0, 0, std::min(world_size, n - first)));
  }
  SampleGridImages result;
  if (rank == 0) result.images = at::cat(images);
  return result;
}

}  // namespace microdit::train
