#include "microdit/encoders/pipeline.h"

#include <c10/util/StringUtil.h>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "microdit/util/error_message.h"

namespace microdit::encoders {
namespace fs = std::filesystem;
namespace {

// The text tower's config file: config.json of a Hugging Face folder, else --text-config; empty
// when neither is given (the DFN5B ViT-H-14 config).
fs::path text_config_file(const EncoderFiles& files) {
  if (fs::is_directory(files.text_encoder)) return files.text_encoder / "config.json";
  return files.text_config;
}

CLIPTextConfig text_config(const EncoderFiles& files) {
  const fs::path path = text_config_file(files);
  if (path.empty()) return CLIPTextConfig::dfn5b_vit_h_14_378();
  const io::Json json = io::read_json_file(path);
  return util::in_context(path.string(), [&] {
    return json.contains("text_cfg") ? CLIPTextConfig::from_open_clip_json(json)
                                     : CLIPTextConfig::from_hf_json(json);
  });
}

// Where text_config found the config, for messages.
std::string text_config_source(const EncoderFiles& files) {
  const fs::path path = text_config_file(files);
  return path.empty() ? files.text_encoder.string() + " (the DFN5B ViT-H-14 config)"
                      : path.string();
}

fs::path text_weights(const fs::path& path) {
  if (!fs::is_directory(path)) return path;
  for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
    if (fs::exists(path / name)) return path / name;
  }
  throw std::runtime_error(
      c10::str(path.string(), ": no model.safetensors or pytorch_model.bin in this folder"));
}

CLIPTokenizer load_tokenizer(const fs::path& path) {
  if (path.empty()) {
    throw std::runtime_error(
        "no tokenizer given: pass bpe_simple_vocab_16e6.txt.gz (open_clip) or a folder with "
        "vocab.json and merges.txt (Hugging Face)");
  }
  if (fs::is_directory(path)) {
    return CLIPTokenizer::hf(path / "vocab.json", path / "merges.txt");
  }
  return CLIPTokenizer::open_clip(path);
}

}  // namespace

bool take_encoder_flag(util::ArgCursor& args, EncoderFiles& files) {
  const std::string& flag = args.flag();
  fs::path* target = flag == "--vae"            ? &files.vae
                     : flag == "--text-encoder" ? &files.text_encoder
                     : flag == "--text-config"  ? &files.text_config
                     : flag == "--tokenizer"    ? &files.tokenizer
                                                : nullptr;
  if (target == nullptr) return false;
  *target = args.value();
  return true;
}

at::ScalarType pipeline_dtype(const std::string& name, const at::Device& device) {
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  if (name == "fp32") return at::kFloat;
  throw std::invalid_argument("--dtype " + name + ": expected auto, bf16, fp16 or fp32");
}

at::Tensor PipelineEncoders::encode_captions(const std::vector<std::string>& captions) {
  const at::Tensor ids = tokenizer->tokenize(captions, text_encoder->config().context_length);
  return text_encoder(ids.to(device));
}

namespace {

void load_text_tower(PipelineEncoders& e, const EncoderFiles& files) {
  const CLIPTextConfig config = text_config(files);
  const fs::path weights = text_weights(files.text_encoder);
  const io::TensorMap tensors = read_clip_text_weights(weights);
  // Before the tower is built: a config of another size would build it first.
  check_clip_text_config(config, tensors, text_config_source(files));
  e.text_encoder = CLIPTextEncoder(config);
  load_clip_text_weights(e.text_encoder, tensors, weights);
  e.tokenizer = load_tokenizer(files.tokenizer);
  e.text_encoder->to(e.device, e.dtype);
  e.text_encoder->eval();
}

}  // namespace

AutoencoderKL load_pipeline_vae(const fs::path& folder, at::Device device, at::ScalarType dtype) {
  AutoencoderKL vae = load_pretrained_autoencoder(folder);
  vae->to(device, dtype);
  vae->eval();
  return vae;
}

PipelineEncoders load_pipeline_encoders(const EncoderFiles& files, at::Device device,
                                        at::ScalarType dtype) {
  PipelineEncoders e;
  e.device = device;
  e.dtype = dtype;
  e.vae = load_pipeline_vae(files.vae, device, dtype);
  load_text_tower(e, files);
  return e;
}

at::Tensor encode_prompts_once(const EncoderFiles& files, const std::vector<std::string>& prompts,
                               at::Device device, at::ScalarType dtype) {
  PipelineEncoders e;
  e.device = device;
  e.dtype = dtype;
  load_text_tower(e, files);
  at::NoGradGuard no_grad;
  return e.encode_captions(prompts).to(at::kFloat);
}

}  // namespace microdit::encoders
