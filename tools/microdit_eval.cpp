// microdit-eval: the zero-shot scores of the paper's COCO protocol (docs/eval.md). FID between
// generated and real images in clean-fid's "clean" mode (eval/clean_fid_inception.h) or
// pytorch-fid's (eval/fid_inception.h), with the Frechet distance of eval/frechet_distance.h; CLIP
// score as torchmetrics computes it (eval/clip_score.h). The result, with every setting, goes to a
// JSON file; the per-image CLIP scores to a JSON-lines file beside it.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/data/prepare_sources.h"
#include "microdit/diffusion/text_to_image.h"
#include "microdit/eval/clean_fid_inception.h"
#include "microdit/eval/clip_score.h"
#include "microdit/eval/coco_captions.h"
#include "microdit/eval/fid_inception.h"
#include "microdit/eval/frechet_distance.h"
#include "microdit/eval/image_folder.h"
#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"

namespace {
namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usage: microdit-eval (--coco DIR | --generated DIR) --out RESULT.json
                     [FID: --inception FILE (--real DIR | --real-stats FILE)]
                     [CLIP score: --clip DIR | --clip-open-clip CONFIG --clip-weights FILE --clip-vocab FILE]

Scores generated images. At least one of FID and CLIP score.

generated images:
  --coco DIR            the folder microdit-sample --coco-captions wrote: NNNNN.png, captions.jsonl
                        (each image's caption and COCO file) and generation.json (its settings,
                        copied into the result); every image must be there
  --generated DIR       any folder of images (.png .jpg ...), as they are (FID only, unless
                        --captions pairs them with captions)
  --captions FILE       with --generated: caption N (line N, from 0) belongs to DIR/NNNNN.png
                        (the --prompts file of microdit-sample; a blank line is an error)

FID, float64 Frechet distance with pytorch-fid's eps retry, in one of two protocols:
  clean        clean-fid's "clean" mode (default): Pillow bicubic resize to 299 in float32
               without quantizing, (x - 128) / 128, NVIDIA's TorchScript Inception
  pytorch-fid  pytorch-fid: its FID Inception-v3, bilinear resize to 299, input in [0, 1]
  --real DIR            real images, short side resized (Pillow bicubic) and center-cropped to
                        --real-size first; with --coco only the files of its captions (COCO's
                        val2014 folder); unreadable files are skipped and counted
  --real-size N         up to 4096; default: generation.json's image_size with --coco, else 256
  --real-stats FILE     cached real statistics (.safetensors from --save-real-stats, or
                        pytorch-fid's .npz) instead of --real
  --save-real-stats F   write the real statistics computed from --real to F
  --mode M              clean (default) or pytorch-fid; recorded in the result and in saved
                        statistics, and checked against --real-stats
  --inception FILE      clean: clean-fid's TorchScript inception-2015-12-05.pt;
                        pytorch-fid: pt_inception-2015-12-05-6726825d.pth (or .safetensors)

CLIP score (torchmetrics: 100 x cosine per image-caption pair, averaged, floored at 0):
  --clip DIR            a Hugging Face CLIPModel folder (config.json, model.safetensors,
                        preprocessor_config.json, vocab.json, merges.txt), e.g.
                        openai/clip-vit-large-patch14 as torchmetrics uses by default
  --clip-open-clip F    an open_clip model config, with --clip-weights FILE and --clip-vocab
                        bpe_simple_vocab_16e6.txt.gz
  --clip-scores FILE    per-image scores, JSON lines (default: RESULT with .clip_scores.jsonl)

  --batch-size N        images per network batch (default 50; fewer where N of them would
                        hold over 1 GiB of pixels)
  --device D            auto (default), cpu, cuda, cuda:N
  --out FILE            the result JSON (written atomically)
exit status: 0 done, 1 failed (the message names the file and the problem), 2 bad arguments
)";

struct Args {
  std::string generated, coco, captions, real, real_stats, save_real_stats, inception, out;
  std::string device = "auto", mode = "clean";
  std::string clip, clip_open_clip, clip_weights, clip_vocab, clip_scores;
  int64_t real_size = 0, batch_size = 50;

  bool fid() const { return !inception.empty(); }
  bool clip_score() const { return !clip.empty() || !clip_open_clip.empty(); }
  fs::path clip_scores_path() const {
    return clip_scores.empty() ? fs::path(out).replace_extension(".clip_scores.jsonl")
                               : fs::path(clip_scores);
  }
};

// An output may not replace what the run reads or another output: an input file, or an image
// (or COCO manifest) of an input folder. Compared by resolved path, so "./x" is "x".
void check_outputs(const Args& a) {
  const auto resolved = [](const fs::path& path) {
    std::error_code error;
    const fs::path r = fs::weakly_canonical(path, error);
    return error ? path.lexically_normal() : r;
  };
  std::vector<std::pair<std::string, fs::path>> outputs = {{"--out", a.out}};
  if (a.clip_score()) outputs.emplace_back("--clip-scores", a.clip_scores_path());
  if (!a.save_real_stats.empty()) outputs.emplace_back("--save-real-stats", a.save_real_stats);
  const std::vector<std::pair<std::string, std::string>> input_files = {
      {"--captions", a.captions},       {"--real-stats", a.real_stats},
      {"--inception", a.inception},     {"--clip-open-clip", a.clip_open_clip},
      {"--clip-weights", a.clip_weights}, {"--clip-vocab", a.clip_vocab}};
  const std::vector<std::pair<std::string, std::string>> input_folders = {
      {"--generated", a.generated}, {"--coco", a.coco}, {"--real", a.real}};
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const auto& [flag, path] = outputs[i];
    const fs::path out = resolved(path);
    for (std::size_t j = 0; j < i; ++j) {
      if (resolved(outputs[j].second) == out) {
        throw std::invalid_argument(fmt::format("{} and {} are the same file, {}", outputs[j].first,
                                                flag, path.string()));
      }
    }
    for (const auto& [input, file] : input_files) {
      if (!file.empty() && resolved(file) == out) {
        throw std::invalid_argument(fmt::format("{} {} is also the {} input: it would be replaced",
                                                flag, path.string(), input));
      }
    }
    const bool read_there = microdit::data::is_image_file(out) ||
                            out.filename() == "captions.jsonl" || out.filename() == "generation.json";
    for (const auto& [input, folder] : input_folders) {
      if (!folder.empty() && read_there && resolved(folder) == out.parent_path()) {
        throw std::invalid_argument(fmt::format(
            "{} {} is a file of the {} folder: it would be replaced", flag, path.string(), input));
      }
    }
  }
}

void check(const Args& a) {
  if (a.generated.empty() == a.coco.empty() || a.out.empty()) {
    throw std::invalid_argument("give --out and one of --coco DIR and --generated DIR");
  }
  if (!a.fid() && !a.clip_score()) {
    throw std::invalid_argument("nothing to compute: give --inception (FID) and/or --clip (CLIP score)");
  }
  if (a.fid() && a.real.empty() == a.real_stats.empty()) {
    throw std::invalid_argument("FID needs the real images: --real DIR or --real-stats FILE (one)");
  }
  if (a.clip_score() && a.coco.empty() && a.captions.empty()) {
    throw std::invalid_argument("CLIP score needs captions: --coco DIR, or --captions FILE with --generated");
  }
  if (!a.coco.empty() && !a.captions.empty()) {
    throw std::invalid_argument("--captions is for --generated; a --coco folder's captions are its "
                                "captions.jsonl");
  }
  if (!a.clip.empty() && !a.clip_open_clip.empty()) {
    throw std::invalid_argument("give one CLIP model: --clip DIR or --clip-open-clip CONFIG");
  }
  if (!a.clip_open_clip.empty() && (a.clip_weights.empty() || a.clip_vocab.empty())) {
    throw std::invalid_argument("--clip-open-clip needs --clip-weights and --clip-vocab");
  }
  if (a.mode != "clean" && a.mode != "pytorch-fid") {
    throw std::invalid_argument("--mode must be clean or pytorch-fid, got " + a.mode);
  }
  if (a.real_size < 0 || a.batch_size <= 0) {
    throw std::invalid_argument("--real-size and --batch-size must be positive");
  }
  check_outputs(a);
  microdit::util::resolve_device(a.device, "--device");  // a bad argument (exit 2), not a failure
}

Args parse(int argc, char** argv) {
  Args a;
  const std::vector<std::pair<std::string, std::string*>> text_flags{
      {"--generated", &a.generated},     {"--coco", &a.coco},
      {"--captions", &a.captions},       {"--real", &a.real},
      {"--real-stats", &a.real_stats},   {"--save-real-stats", &a.save_real_stats},
      {"--mode", &a.mode},               {"--inception", &a.inception},
      {"--device", &a.device},           {"--out", &a.out},
      {"--clip", &a.clip},               {"--clip-open-clip", &a.clip_open_clip},
      {"--clip-weights", &a.clip_weights}, {"--clip-vocab", &a.clip_vocab},
      {"--clip-scores", &a.clip_scores}};
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    const auto flag = std::find_if(text_flags.begin(), text_flags.end(),
                                   [&](const auto& f) { return f.first == arg; });
    if (flag != text_flags.end()) {
      *flag->second = args.value();
    } else if (arg == "--real-size") {
      a.real_size = args.int_value(1, 4096);
    } else if (arg == "--batch-size") {
      a.batch_size = args.int_value(1);
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  check(a);
  return a;
}

// The images to score, and their captions when known (COCO manifest or --captions).
struct Generated {
  std::vector<fs::path> files;
  std::vector<std::string> captions;                  // empty: FID only
  std::vector<microdit::eval::CocoCaption> coco;       // --coco: the manifest
  microdit::io::Json settings;                         // --coco: generation.json
};

// NNNNN.png in `dir` for each index; a missing one is an error naming how many are missing.
std::vector<fs::path> numbered_images(const fs::path& dir, std::size_t count) {
  std::vector<fs::path> files;
  std::size_t missing = 0;
  std::string first;
  for (std::size_t i = 0; i < count; ++i) {
    files.push_back(microdit::diffusion::generated_image_path(dir, static_cast<int64_t>(i)));
    if (!fs::exists(files.back()) && missing++ == 0) first = files.back().string();
  }
  if (missing > 0) {
    throw std::runtime_error(fmt::format("{}: {} of {} images missing (first: {}); finish them "
                                         "with the same microdit-sample command",
                                         dir.string(), missing, count, first));
  }
  return files;
}

Generated generated_images(const Args& a) {
  using namespace microdit;
  Generated g;
  if (!a.coco.empty()) {
    const fs::path dir(a.coco);
    g.coco = eval::read_caption_manifest(dir / "captions.jsonl");
    g.settings = io::read_json_file(dir / "generation.json");
    g.files = numbered_images(dir, g.coco.size());
    for (const auto& c : g.coco) g.captions.push_back(c.caption);
  } else if (!a.captions.empty()) {
    g.captions = diffusion::read_prompt_file(a.captions);
    g.files = numbered_images(a.generated, g.captions.size());
  } else {
    g.files = eval::list_images(a.generated);
  }
  return g;
}

microdit::io::Json set_entry(const std::string& source, const microdit::eval::FolderActivations& f) {
  microdit::io::Json entry = microdit::io::Json::object();
  entry["source"] = source;
  entry["images"] = f.activations.size(0);
  entry["skipped"] = static_cast<int64_t>(f.skipped.size());
  return entry;
}

// The network of --mode behind the common signature: (B,3,H,W) uint8 images -> (B,2048).
microdit::eval::FeatureExtractor make_extractor(const Args& a, at::Device device) {
  using namespace microdit;
  if (a.mode == "clean") {
    auto net = std::make_shared<eval::CleanFIDInception>(a.inception, device);
    return [net](const at::Tensor& images) { return (*net)(images); };
  }
  eval::FIDInceptionV3 net;
  eval::load_fid_inception_weights(net, a.inception);
  net->to(device);
  net->eval();
  // pytorch-fid reads images with ToTensor: [0, 1].
  return [net, device](const at::Tensor& images) mutable {
    return net(images.to(at::kFloat).div(255.0).to(device));
  };
}

// FID's covariance needs two images or more on each side.
microdit::eval::ActivationStatistics statistics_of(const microdit::eval::FolderActivations& set,
                                                   const std::string& where) {
  if (set.activations.size(0) < 2) {
    throw std::runtime_error(fmt::format("{}: FID needs at least 2 readable images, found {}",
                                         where, set.activations.size(0)));
  }
  return microdit::eval::ActivationStatistics::from_activations(set.activations);
}

microdit::eval::ActivationStatistics load_real_stats(const Args& a, int64_t features) {
  std::string recorded;
  auto stats = microdit::eval::load_statistics(a.real_stats, &recorded);
  if (!recorded.empty() && recorded != a.mode) {
    throw std::runtime_error(fmt::format(
        "{}: statistics were computed in --mode {}, this run uses --mode {} (the networks and "
        "resizes differ, so the FID would be meaningless)",
        a.real_stats, recorded, a.mode));
  }
  if (stats.mu.size(0) != features) {
    throw std::runtime_error(
        fmt::format("{}: statistics of {} features, the Inception network gives {}", a.real_stats,
                    stats.mu.size(0), features));
  }
  return stats;
}

// The real side of FID: cached statistics, or the --real images (with --coco: the files of the
// drawn captions only), resized and cropped to the generation resolution.
microdit::eval::ActivationStatistics real_statistics(const Args& a, const Generated& g,
                                                     const microdit::eval::FeatureExtractor& extract,
                                                     int64_t features, microdit::io::Json& result) {
  using namespace microdit;
  if (!a.real_stats.empty()) {
    result["real"] = a.real_stats;
    return load_real_stats(a, features);
  }
  int64_t size = a.real_size;
  if (size == 0) {
    const io::Json* made = io::json_find(g.settings, "image_size");
    size = made != nullptr ? io::json_to_int64(*made) : 256;
  }
  std::vector<fs::path> files;
  for (const auto& c : g.coco) files.push_back(fs::path(a.real) / c.file_name);
  const auto set = g.coco.empty()
                       ? eval::folder_activations(extract, a.real, {size, a.batch_size})
                       : eval::file_activations(extract, files, {size, a.batch_size}, a.real);
  auto stats = statistics_of(set, a.real);
  if (!a.save_real_stats.empty()) eval::save_statistics(a.save_real_stats, stats, a.mode);
  auto entry = set_entry(a.real, set);
  entry["size"] = size;
  result["real"] = std::move(entry);
  return stats;
}

void compute_fid(const Args& a, const Generated& g, at::Device device, microdit::io::Json& result) {
  using namespace microdit;
  const eval::FeatureExtractor extract = make_extractor(a, device);
  result["mode"] = a.mode;
  result["inception"] = a.inception;
  const auto generated = eval::file_activations(extract, g.files, {0, a.batch_size},
                                                a.coco.empty() ? a.generated : a.coco);
  result["generated"] = set_entry(a.coco.empty() ? a.generated : a.coco, generated);
  // The real side first: a cached statistics file that cannot be used is named before the
  // generated set's own problems.
  const auto real = real_statistics(a, g, extract, generated.activations.size(1), result);
  const auto fake = statistics_of(generated, a.coco.empty() ? a.generated : a.coco);
  const double fid = eval::frechet_distance(fake, real);
  result["fid"] = fid;
  spdlog::info("FID {:.4f} ({} generated images)", fid, generated.activations.size(0));
}

void compute_clip_score(const Args& a, const Generated& g, at::Device device,
                        microdit::io::Json& result) {
  using namespace microdit;
  const auto files = a.clip.empty()
                         ? eval::CLIPScoreFiles::open_clip(a.clip_open_clip, a.clip_weights, a.clip_vocab)
                         : eval::CLIPScoreFiles::hf_folder(a.clip);
  eval::CLIPScore model(files, device);
  const auto scored = eval::clip_score_files(model, g.files, g.captions, a.batch_size);
  const fs::path scores_path = a.clip_scores_path();
  io::write_file_atomically(scores_path, [&](std::ostream& out) {
    for (std::size_t i = 0; i < g.files.size(); ++i) {
      io::Json line = io::Json::object();
      line["file"] = g.files[i].filename().string();
      line["caption"] = g.captions[i];
      line["clip_score"] = static_cast<double>(scored.scores[i].item<float>());
      out << line.dump() << "\n";
    }
  });
  io::Json entry = io::Json::object();
  entry["model"] = a.clip.empty() ? a.clip_open_clip : a.clip;
  entry["pairs"] = static_cast<int64_t>(g.files.size());
  entry["per_image"] = scores_path.string();
  result["clip"] = std::move(entry);
  result["clip_score"] = scored.clip_score;
  spdlog::info("CLIP score {:.4f} ({} image-caption pairs)", scored.clip_score, g.files.size());
}

int run(Args& a) {
  using namespace microdit;
  const at::Device device = util::resolve_device(a.device, "--device");
  const Generated g = generated_images(a);
  io::Json result = io::Json::object();
  if (!a.coco.empty()) {
    io::Json coco = io::Json::object();
    coco["dir"] = a.coco;
    coco["captions"] = static_cast<int64_t>(g.coco.size());
    coco["generation"] = g.settings;
    result["coco"] = std::move(coco);
  }
  if (a.fid()) compute_fid(a, g, device, result);
  if (a.clip_score()) compute_clip_score(a, g, device, result);
  io::write_file_atomically(a.out, [&](std::ostream& out) { out << result.dump() << "\n"; });
  spdlog::info("wrote {}", a.out);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return microdit::util::run_tool<Args>("microdit-eval", argc, argv, parse, run);
}
