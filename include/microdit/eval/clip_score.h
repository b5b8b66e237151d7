// CLIP score (Hessel et al. 2021) as torchmetrics computes it (CLIPScore /
// functional clip_score, default model openai/clip-vit-large-patch14):
//   per pair   score = 100 * cos(E_image, E_text)   (float32, embeddings not clamped)
//   aggregate  max(mean(score), 0)                  (the floor after averaging)
// E_image is CLIPModel.get_image_features of CLIPImageProcessor's pixels; E_text is
// get_text_features of CLIPProcessor(text, padding=True) ids, which torchmetrics cuts to
// max_position_embeddings (77) tokens when longer, losing the end token (the pooled state is
// then the start token's: argmax(ids), as HF pools for the openai configs). Padding never
// changes a pooled state: attention is causal and the pad comes after the end token.
// An open_clip model is scored the same way with its own preprocessing (clip_preprocess.h) and
// tokenizer (cut to 77 keeping the end token).
// Legend: B batch (image-caption pairs), T tokens, S image size, P projection dim.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "microdit/encoders/clip_text.h"
#include "microdit/encoders/clip_tokenizer.h"
#include "microdit/encoders/clip_vision.h"
#include "microdit/image/clip_preprocess.h"

namespace microdit::eval {

// Where a CLIP model's files are.
struct CLIPScoreFiles {
  // Hugging Face CLIPModel folder: config.json, model.safetensors (or a sharded
  // model.safetensors.index.json, or pytorch_model.bin), preprocessor_config.json, vocab.json,
  // merges.txt (the files of openai/clip-vit-large-patch14).
  static CLIPScoreFiles hf_folder(const std::filesystem::path& folder);
  // open_clip: the model config json (with vision_cfg, text_cfg, embed_dim, quick_gelu), the
  // weights (.safetensors, or an open_clip .pt/.bin checkpoint) and bpe_simple_vocab_16e6.txt.gz.
  static CLIPScoreFiles open_clip(const std::filesystem::path& config_json,
                                  const std::filesystem::path& weights,
                                  const std::filesystem::path& bpe_vocab);

  encoders::CLIPTextLayout layout = encoders::CLIPTextLayout::hf;
  std::filesystem::path config;        // config.json / open_clip model config
  std::vector<std::filesystem::path> weights;  // one file, or the shards of an index
  std::filesystem::path preprocessor;  // hf only
  std::vector<std::filesystem::path> tokenizer;  // hf: vocab.json, merges.txt; open_clip: .gz
};

// Per-pair scores and torchmetrics' aggregate of one call.
struct CLIPScoreResult {
  at::Tensor scores;  // (B) float32, on the CPU
  double clip_score = 0.0;  // max(mean(scores), 0)
};

// torchmetrics' aggregate over batches: sums of scores and counts, max(sum / n, 0) at the end
// (summed in float64; torchmetrics sums in float32).
struct CLIPScoreAccumulator {
  double sum = 0.0;
  int64_t count = 0;
  void add(const at::Tensor& scores);  // (B)
  double compute() const;  // NaN when nothing was added (torchmetrics: 0 / 0)
};

class CLIPScore {
 public:
  // Loads the model in float32 onto `device`. Throws std::runtime_error naming a missing file,
  // or the file and key of a bad or mismatched tensor.
  explicit CLIPScore(const CLIPScoreFiles& files, at::Device device = at::kCPU);

  // images: (H,W,3) uint8 each, any sizes -> (B,3,S,S) float32 model input (CPU).
  at::Tensor preprocess(const std::vector<at::Tensor>& images) const;
  // captions -> (B,T) int64 ids as the reference tokenizes them (see the header comment).
  at::Tensor token_ids(const std::vector<std::string>& captions) const;
  at::Tensor image_embeds(const std::vector<at::Tensor>& images);      // (B,P), not normalized
  at::Tensor text_embeds(const std::vector<std::string>& captions);    // (B,P), not normalized
  // Image i scored against caption i. Throws std::invalid_argument when the counts differ or
  // are zero.
  CLIPScoreResult score(const std::vector<at::Tensor>& images,
                        const std::vector<std::string>& captions);

  encoders::CLIPVisionEncoder& vision() { return vision_; }
  encoders::CLIPTextEncoder& text() { return text_; }
  const image::CLIPImagePreprocess& preprocessing() const { return preprocess_; }

 private:
  at::Device device_;
  encoders::CLIPTokenizer tokenizer_;  // constructed first: its files are checked first
  image::CLIPImagePreprocess preprocess_;
  encoders::CLIPVisionEncoder vision_{nullptr};
  encoders::CLIPTextEncoder text_{nullptr};
};

// Image files scored against their captions in batches of `batch_size`: the per-pair scores in
// file order (float32, CPU) and torchmetrics' aggregate. A file that cannot be read is an error
// naming it (a generated set must be complete).
CLIPScoreResult clip_score_files(CLIPScore& model, const std::vector<std::filesystem::path>& files,
                                 const std::vector<std::string>& captions, int64_t batch_size);

// 100 * cosine similarity of each row pair: (B,P), (B,P) -> (B) float32, as torchmetrics
// (normalize each embedding by its L2 norm, then the dot product).
at::Tensor clip_pair_scores(const at::Tensor& image_embeds, const at::Tensor& text_embeds);

}  // namespace microdit::eval
