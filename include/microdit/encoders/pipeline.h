// The frozen encoders around MicroDiT, loaded together from local files: the VAE (diffusers
// folder), the CLIP text tower (open_clip file with its model config, or a Hugging Face folder)
// and its tokenizer. microdit-prepare encodes with them, microdit-sample decodes and conditions.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "microdit/encoders/autoencoder_kl.h"
#include "microdit/encoders/clip_text.h"
#include "microdit/encoders/clip_tokenizer.h"
#include "microdit/util/arg_cursor.h"

namespace microdit::encoders {

struct EncoderFiles {
  std::filesystem::path vae;           // diffusers folder: config.json + weights
  std::filesystem::path text_encoder;  // weights file (open_clip or HF layout) or HF folder
  std::filesystem::path text_config;   // open_clip model config or HF config.json; empty: DFN5B
  std::filesystem::path tokenizer;     // bpe_simple_vocab_16e6.txt.gz, or a folder with
                                       // vocab.json + merges.txt (HF)
};

struct PipelineEncoders {
  AutoencoderKL vae{nullptr};
  CLIPTextEncoder text_encoder{nullptr};
  std::optional<CLIPTokenizer> tokenizer;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // the models' dtype (bf16 on CUDA, as the official runs)

  // (B, context_length, D) token states of `captions`, on the device, in the models' dtype.
  at::Tensor encode_captions(const std::vector<std::string>& captions);
};

// The tools' model flags: --vae, --text-encoder, --text-config and --tokenizer. Takes the current
// flag's value into `files` and returns true when it is one of them.
bool take_encoder_flag(util::ArgCursor& args, EncoderFiles& files);

// A --dtype option: "auto" (bf16 on CUDA, fp32 on the CPU), "bf16", "fp16" or "fp32".
at::ScalarType pipeline_dtype(const std::string& name, const at::Device& device);

// Loads the three models onto `device` in `dtype`, in eval mode. Errors name the file.
PipelineEncoders load_pipeline_encoders(const EncoderFiles& files, at::Device device,
                                        at::ScalarType dtype);

// The VAE of `folder` alone, on `device` in `dtype`, in eval mode.
AutoencoderKL load_pipeline_vae(const std::filesystem::path& folder, at::Device device,
                                at::ScalarType dtype);

// (N, context_length, D) float32 token states of `prompts` on `device`, from the text tower and
// tokenizer of `files` (its vae is not read), which are freed before it returns: a training run
// embeds its sample prompts once and keeps only the embeddings.
at::Tensor encode_prompts_once(const EncoderFiles& files, const std::vector<std::string>& prompts,
                               at::Device device, at::ScalarType dtype);

}  // namespace microdit::encoders
