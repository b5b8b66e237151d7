// CLIP score as torchmetrics computes it (see clip_score.h).
#include "microdit/eval/clip_score.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/image/decode.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/torch_checkpoint.h"
#include "microdit/util/error_message.h"

namespace microdit::eval {
namespace fs = std::filesystem;
using encoders::CLIPTextLayout;

namespace {

fs::path require_file(const fs::path& path, std::string_view what) {
  if (!fs::is_regular_file(path)) {
    throw std::runtime_error(c10::str("CLIPScore: ", path.string(), ": missing (", what, ")"));
  }
  return path;
}

std::string joined(const std::vector<fs::path>& files) {
  std::string names;
  for (const fs::path& f : files) names += (names.empty() ? "" : ", ") + f.string();
  return names;
}

// The shard files named by a model.safetensors.index.json's weight_map, each once.
std::vector<fs::path> index_shards(const fs::path& index) {
  const io::Json json = io::read_json_file(index);
  const io::Json* map = io::json_find(json, "weight_map");
  if (map == nullptr || !map->is_object()) {
    throw std::runtime_error(c10::str("CLIPScore: ", index.string(), ": no \"weight_map\" object"));
  }
  std::set<std::string> names;
  util::in_context(index.string(), [&] {
    for (const auto& [key, file] : io::json_to_object(*map)) names.insert(io::json_to_string(file));
  });
  std::vector<fs::path> shards;
  for (const std::string& name : names) shards.push_back(index.parent_path() / name);
  return shards;
}

std::vector<fs::path> hf_weights(const fs::path& folder) {
  if (fs::exists(folder / "model.safetensors")) return {folder / "model.safetensors"};
  if (fs::exists(folder / "model.safetensors.index.json")) {
    return index_shards(folder / "model.safetensors.index.json");
  }
  if (fs::exists(folder / "pytorch_model.bin")) return {folder / "pytorch_model.bin"};
  throw std::runtime_error(c10::str("CLIPScore: ", folder.string(),
                                    ": no model.safetensors, model.safetensors.index.json or "
                                    "pytorch_model.bin in this folder"));
}

io::TensorMap load_weights(const std::vector<fs::path>& files) {
  io::TensorMap all;
  for (const fs::path& file : files) {
    require_file(file, "model weights");
    io::TensorMap part = file.extension() == ".safetensors" ? io::load_safetensors(file)
                                                            : io::load_torch_state_dict(file);
    all.merge(part);
  }
  return all;
}

encoders::CLIPTokenizer load_tokenizer(const CLIPScoreFiles& files) {
  require_file(files.config, "model config");
  if (files.layout == CLIPTextLayout::hf) {
    require_file(files.preprocessor, "CLIPImageProcessor settings");
    return encoders::CLIPTokenizer::hf(require_file(files.tokenizer.at(0), "tokenizer vocabulary"),
                                       require_file(files.tokenizer.at(1), "tokenizer merges"));
  }
  return encoders::CLIPTokenizer::open_clip(
      require_file(files.tokenizer.at(0), "open_clip BPE vocabulary"));
}

}  // namespace

CLIPScoreFiles CLIPScoreFiles::hf_folder(const fs::path& folder) {
  if (!fs::is_directory(folder)) {
    throw std::runtime_error(c10::str("CLIPScore: ", folder.string(), ": not a folder"));
  }
  CLIPScoreFiles files;
  files.layout = CLIPTextLayout::hf;
  files.config = folder / "config.json";
  files.weights = hf_weights(folder);
  files.preprocessor = folder / "preprocessor_config.json";
  files.tokenizer = {folder / "vocab.json", folder / "merges.txt"};
  return files;
}

CLIPScoreFiles CLIPScoreFiles::open_clip(const fs::path& config_json, const fs::path& weights,
                                         const fs::path& bpe_vocab) {
  CLIPScoreFiles files;
  files.layout = CLIPTextLayout::open_clip;
  files.config = config_json;
  files.weights = {weights};
  files.tokenizer = {bpe_vocab};
  return files;
}

void CLIPScoreAccumulator::add(const at::Tensor& scores) {
  sum += scores.to(at::kDouble).sum().item<double>();
  count += scores.numel();
}

double CLIPScoreAccumulator::compute() const {
  if (count == 0) return std::numeric_limits<double>::quiet_NaN();
  return std::max(sum / static_cast<double>(count), 0.0);
}

CLIPScore::CLIPScore(const CLIPScoreFiles& files, at::Device device)
    : device_(device), tokenizer_(load_tokenizer(files)) {
  const io::Json config = io::read_json_file(files.config);
  const bool hf = files.layout == CLIPTextLayout::hf;
  auto text_config = util::in_context(files.config.string(), [&] {
    return hf ? encoders::CLIPTextConfig::from_hf_json(config)
              : encoders::CLIPTextConfig::from_open_clip_json(config);
  });
  const auto vision_config = util::in_context(files.config.string(), [&] {
    return hf ? encoders::CLIPVisionConfig::from_hf_json(config)
              : encoders::CLIPVisionConfig::from_open_clip_json(config);
  });
  if (hf) {
    const io::Json settings = io::read_json_file(files.preprocessor);
    preprocess_ = util::in_context(files.preprocessor.string(), [&] {
      return image::CLIPImagePreprocess::from_hf_json(settings);
    });
    if (preprocess_.crop_size != vision_config.image_size) {
      throw std::runtime_error(c10::str(
          files.preprocessor.string(), ": crop_size ", preprocess_.crop_size,
          " (0: no crop), but the image tower of ", files.config.string(), " takes ",
          vision_config.image_size, "x", vision_config.image_size, " images"));
    }
  } else {
    preprocess_ = image::CLIPImagePreprocess::open_clip(vision_config.image_size);
  }
  text_config.projection_dim = vision_config.projection_dim;
  const io::TensorMap tensors = load_weights(files.weights);
  // Before the towers are built: a config of another size would build them first.
  encoders::check_clip_vision_config(vision_config, tensors, files.config.string());
  encoders::check_clip_text_config(text_config, tensors, files.config.string());
  vision_ = encoders::CLIPVisionEncoder(vision_config);
  text_ = encoders::CLIPTextEncoder(text_config);
  const std::string weights = joined(files.weights);
  util::in_context(weights, [&] { encoders::load_clip_vision_state_dict(vision_, tensors); });
  util::in_context(weights, [&] { encoders::load_clip_text_state_dict(text_, tensors); });
  for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(vision_.get()),
                               static_cast<torch::nn::Module*>(text_.get())}) {
    m->to(device_, at::kFloat);
    m->eval();
  }
}

at::Tensor CLIPScore::preprocess(const std::vector<at::Tensor>& images) const {
  return preprocess_.batch(images);
}

at::Tensor CLIPScore::token_ids(const std::vector<std::string>& captions) const {
  const int64_t context = text_->config().context_length;
  if (tokenizer_.mode() == encoders::CLIPTokenizer::Mode::open_clip) {
    return tokenizer_.tokenize(captions, context);  // cut to 77 with the end token kept
  }
  // CLIPProcessor(padding=True) rows, [bos] + tokens + [eos] padded to the longest, then cut
  // to `context` tokens as torchmetrics does (the end token of a long caption is lost).
  std::vector<std::vector<int64_t>> rows;
  size_t longest = 0;
  for (const std::string& caption : captions) {
    std::vector<int64_t> row{tokenizer_.start_id()};
    for (int64_t id : tokenizer_.encode(caption)) row.push_back(id);
    row.push_back(tokenizer_.end_id());
    if (row.size() > static_cast<size_t>(context)) row.resize(context);
    longest = std::max(longest, row.size());
    rows.push_back(std::move(row));
  }
  at::Tensor ids = at::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)},
                            tokenizer_.pad_id(), at::kLong);  // (B,T)
  for (size_t i = 0; i < rows.size(); ++i) {
    ids[static_cast<int64_t>(i)]
        .narrow(0, 0, static_cast<int64_t>(rows[i].size()))
        .copy_(at::tensor(rows[i], at::kLong));
  }
  return ids;
}

at::Tensor CLIPScore::image_embeds(const std::vector<at::Tensor>& images) {
  at::NoGradGuard no_grad;
  return vision_(preprocess(images).to(device_));
}

at::Tensor CLIPScore::text_embeds(const std::vector<std::string>& captions) {
  at::NoGradGuard no_grad;
  return text_->projected(token_ids(captions).to(device_));
}

CLIPScoreResult CLIPScore::score(const std::vector<at::Tensor>& images,
                                 const std::vector<std::string>& captions) {
  if (images.size() != captions.size() || images.empty()) {
    throw std::invalid_argument(c10::str("CLIPScore: ", images.size(), " images and ",
                                         captions.size(),
                                         " captions; expected the same number, at least one"));
  }
  CLIPScoreResult result;
  result.scores = clip_pair_scores(image_embeds(images), text_embeds(captions)).cpu();
  CLIPScoreAccumulator total;
  total.add(result.scores);
  result.clip_score = total.compute();
  return result;
}

CLIPScoreResult clip_score_files(CLIPScore& model, const std::vector<std::filesystem::path>& files,
                                 const std::vector<std::string>& captions, int64_t batch_size) {
  if (files.size() != captions.size() || files.empty() || batch_size < 1) {
    throw std::invalid_argument(c10::str("clip_score_files: ", files.size(), " files, ",
                                         captions.size(), " captions, batch ", batch_size));
  }
  std::vector<at::Tensor> scores;
  CLIPScoreAccumulator total;
  for (std::size_t start = 0; start < files.size(); start += batch_size) {
    const std::size_t end = std::min(files.size(), start + static_cast<std::size_t>(batch_size));
    std::vector<at::Tensor> images;
    for (std::size_t i = start; i < end; ++i) images.push_back(image::read_image_rgb(files[i]));
    const std::vector<std::string> batch(captions.begin() + start, captions.begin() + end);
    scores.push_back(model.score(images, batch).scores);
    total.add(scores.back());
  }
  return {at::cat(scores), total.compute()};
}

at::Tensor clip_pair_scores(const at::Tensor& image_embeds, const at::Tensor& text_embeds) {
  const at::Tensor a = image_embeds.to(at::kFloat), b = text_embeds.to(at::kFloat);  // (B,P)
  const at::Tensor an = a / a.norm(2, -1, /*keepdim=*/true);
  const at::Tensor bn = b / b.norm(2, -1, /*keepdim=*/true);
  return 100 * (an * bn).sum(-1);  // (B)
}

}  // namespace microdit::eval
