// microdit-eval: FID between a folder of generated images and real images (a folder, or cached
// statistics), in clean-fid's "clean" mode (eval/clean_fid_inception.h) or pytorch-fid's
// (eval/fid_inception.h), with the Frechet distance of eval/frechet_distance.h. The result, with
// every setting, goes to a JSON file.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "microdit/eval/clean_fid_inception.h"
#include "microdit/eval/fid_inception.h"
#include "microdit/eval/frechet_distance.h"
#include "microdit/eval/image_folder.h"
#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-eval --generated DIR (--real DIR | --real-stats FILE)
                     --inception FILE --out RESULT.json [options]

FID between the images in --generated and the real images, float64 Frechet distance with
pytorch-fid's eps retry, in one of two protocols:
  clean        clean-fid's "clean" mode (default): Pillow bicubic resize to 299 in float32
               without quantizing, (x - 128) / 128, NVIDIA's TorchScript Inception
  pytorch-fid  pytorch-fid: its FID Inception-v3, bilinear resize to 299, input in [0, 1]

  --generated DIR       generated images (.png .jpg ...), as they are
  --real DIR            real images, short side resized (Pillow bicubic) and center-cropped to
                        --real-size first (the COCO protocol); unreadable files are skipped and
                        counted
  --real-size N         default 256
  --real-stats FILE     cached real statistics (.safetensors from --save-real-stats, or
                        pytorch-fid's .npz) instead of --real
  --save-real-stats F   write the real statistics computed from --real to F
  --mode M              clean (default) or pytorch-fid; recorded in the result and in saved
                        statistics, and checked against --real-stats
  --inception FILE      clean: clean-fid's TorchScript inception-2015-12-05.pt;
                        pytorch-fid: pt_inception-2015-12-05-6726825d.pth (or .safetensors)
  --batch-size N        default 50
  --device D            auto (default), cpu, cuda, cuda:N
  --out FILE            the result JSON (written atomically)
exit status: 0 done, 1 failed (the message names the file and the problem), 2 bad arguments
)";

struct Args {
  std::string generated, real, real_stats, save_real_stats, inception, out, device = "auto";
  std::string mode = "clean";
  int64_t real_size = 256, batch_size = 50;
};

Args parse(int argc, char** argv) {
  Args a;
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    if (arg == "--generated") {
      a.generated = args.value();
    } else if (arg == "--real") {
      a.real = args.value();
    } else if (arg == "--real-size") {
      a.real_size = std::stoll(args.value());
    } else if (arg == "--real-stats") {
      a.real_stats = args.value();
    } else if (arg == "--save-real-stats") {
      a.save_real_stats = args.value();
    } else if (arg == "--mode") {
      a.mode = args.value();
    } else if (arg == "--inception") {
      a.inception = args.value();
    } else if (arg == "--batch-size") {
      a.batch_size = std::stoll(args.value());
    } else if (arg == "--device") {
      a.device = args.value();
    } else if (arg == "--out") {
      a.out = args.value();
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  if (a.generated.empty() || a.inception.empty() || a.out.empty()) {
    throw std::invalid_argument("--generated, --inception and --out are required");
  }
  if (a.real.empty() == a.real_stats.empty()) {
    throw std::invalid_argument("give the real images with --real DIR or --real-stats FILE (one)");
  }
  if (a.mode != "clean" && a.mode != "pytorch-fid") {
    throw std::invalid_argument("--mode must be clean or pytorch-fid, got " + a.mode);
  }
  if (a.real_size <= 0 || a.batch_size <= 0) {
    throw std::invalid_argument("--real-size and --batch-size must be positive");
  }
  return a;
}

microdit::io::Json folder_entry(const std::string& dir, const microdit::eval::FolderActivations& f) {
  microdit::io::Json entry = microdit::io::Json::Object{};
  entry.set("dir", dir);
  entry.set("images", f.activations.size(0));
  entry.set("skipped", static_cast<int64_t>(f.skipped.size()));
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

microdit::eval::ActivationStatistics load_real_stats(const Args& a) {
  std::string recorded;
  auto stats = microdit::eval::load_statistics(a.real_stats, &recorded);
  if (!recorded.empty() && recorded != a.mode) {
    throw std::runtime_error(fmt::format(
        "{}: statistics were computed in --mode {}, this run uses --mode {} (the networks and "
        "resizes differ, so the FID would be meaningless)",
        a.real_stats, recorded, a.mode));
  }
  return stats;
}

int run(Args& a) {
  using namespace microdit;
  const at::Device device(a.device == "auto" ? util::default_device_name() : a.device);
  const eval::FeatureExtractor extract = make_extractor(a, device);
  io::Json result = io::Json::Object{};
  result.set("metric", "fid");
  result.set("mode", a.mode);
  result.set("inception", a.inception);

  const auto generated = eval::folder_activations(extract, a.generated, {0, a.batch_size});
  result.set("generated", folder_entry(a.generated, generated));
  eval::ActivationStatistics real;
  if (a.real_stats.empty()) {
    const auto folder = eval::folder_activations(extract, a.real, {a.real_size, a.batch_size});
    real = eval::ActivationStatistics::from_activations(folder.activations);
    if (!a.save_real_stats.empty()) eval::save_statistics(a.save_real_stats, real, a.mode);
    auto entry = folder_entry(a.real, folder);
    entry.set("size", a.real_size);
    result.set("real", std::move(entry));
  } else {
    real = load_real_stats(a);
    result.set("real", a.real_stats);
  }
  const double fid = eval::frechet_distance(
      eval::ActivationStatistics::from_activations(generated.activations), real);
  result.set("fid", fid);
  io::write_file_atomically(a.out, [&](std::ostream& out) { out << result.dump() << "\n"; });
  spdlog::info("FID {:.4f} ({} generated images); wrote {}", fid, generated.activations.size(0),
               a.out);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return microdit::util::run_tool<Args>("microdit-eval", argc, argv, parse, run);
}
