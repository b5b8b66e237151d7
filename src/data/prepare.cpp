#include "microdit/data/prepare.h"

#include <ATen/Parallel.h>
#include <c10/util/StringUtil.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "microdit/data/caption_cleaner.h"
#include "microdit/data/mds.h"
#include "microdit/image/decode.h"
#include "microdit/image/resize.h"
#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"
#include "microdit/nn/autocast.h"
#include "microdit/util/duration.h"
#include "microdit/util/error_message.h"
#include "microdit/util/remove_tree.h"

namespace microdit::data {
namespace fs = std::filesystem;
namespace {

std::string part_name(int64_t index) { return fmt::format("part-{:05d}", index); }

std::string strip(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n\f\v");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r\n\f\v") - first + 1);
}

// A sample ready for the encoders: its caption and one (3,res,res) image per resolution.
struct Prepared {
  std::string name;
  std::string caption;
  std::vector<at::Tensor> images;
  std::string error;  // set when the sample is skipped
};

Prepared prepare_one(RawSample& raw, const PrepareOptions& options) {
  Prepared out{raw.name, "", {}, raw.error};
  if (!out.error.empty()) return out;
  try {
    const at::Tensor image = image::decode_image_rgb(raw.image_bytes, raw.name);
    const int64_t short_side = std::min(image.size(0), image.size(1));
    if (short_side < options.min_size) {
      out.error = c10::str("too small: ", image.size(1), "x", image.size(0), ", the short side is under ",
                           options.min_size);
      return out;
    }
    out.caption = options.clean_captions ? clean_caption(raw.caption) : strip(raw.caption);
    for (const int64_t res : options.resolutions) out.images.push_back(image::preprocess(image, res));
  } catch (const std::bad_alloc&) {
    throw;  // the machine's memory, not the image: the part must not be recorded as done
  } catch (const c10::OutOfMemoryError&) {
    throw;
  } catch (const std::exception& e) {
    out.error = util::error_message(e);
  }
  return out;
}

std::string tensor_bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.const_data_ptr()), c.nbytes());
}

class PartWriter {
 public:
  PartWriter(const fs::path& dir, const PrepareOptions& options, encoders::PipelineEncoders& encoders)
      : options_(options), encoders_(encoders), writer_(dir, columns(options), options.shard_size) {}

  // Decodes and resizes the batch on all cores, then encodes and writes the readable samples.
  void write_batch(std::vector<RawSample>& batch) {
    std::vector<Prepared> prepared(batch.size());
    at::parallel_for(0, static_cast<int64_t>(batch.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) prepared[i] = prepare_one(batch[i], options_);
    });
    std::vector<Prepared*> ok;
    for (auto& p : prepared) {
      if (p.error.empty()) {
        ok.push_back(&p);
      } else {
        ++skipped;
        spdlog::warn("skipping {}: {}", p.name, p.error);
      }
    }
    if (!ok.empty()) encode_and_write(ok);
    batch.clear();
  }

  void finish() { writer_.finish(); }

  int64_t written = 0;
  int64_t skipped = 0;

 private:
  static std::vector<std::pair<std::string, std::string>> columns(const PrepareOptions& options) {
    std::vector<std::pair<std::string, std::string>> cols{{"caption", "str"},
                                                          {"caption_latents", "bytes"}};
    for (const int64_t res : options.resolutions) cols.emplace_back(c10::str("latents_", res), "bytes");
    return cols;
  }

  void encode_and_write(const std::vector<Prepared*>& samples) {
    at::NoGradGuard no_grad;
    auto& e = encoders_;
    nn::AutocastGuard autocast(e.device.type(), e.dtype, e.device.is_cuda() && e.dtype != at::kFloat);
    std::vector<std::string> captions;
    for (const auto* s : samples) captions.push_back(s->caption);
    const at::Tensor text = e.encode_captions(captions).to(at::kHalf).cpu();
    std::vector<at::Tensor> latents;
    for (std::size_t r = 0; r < options_.resolutions.size(); ++r) {
      std::vector<at::Tensor> images;
      for (const auto* s : samples) images.push_back(s->images[r]);
      const at::Tensor x = at::stack(images).to(e.device, e.dtype);
      latents.push_back(e.vae->encode_latents(x).to(at::kHalf).cpu());
    }
    for (std::size_t i = 0; i < samples.size(); ++i) {
      MDSSample sample;
      sample.set("caption", samples[i]->caption);
      sample.set("caption_latents", tensor_bytes(text[i]));
      for (std::size_t r = 0; r < latents.size(); ++r) {
        sample.set(c10::str("latents_", options_.resolutions[r]), tensor_bytes(latents[r][i]));
      }
      writer_.write(sample);
      ++written;
    }
  }

  const PrepareOptions& options_;
  encoders::PipelineEncoders& encoders_;
  MDSWriter writer_;
};

bool part_complete(const fs::path& out, int64_t index) {
  return fs::exists(out / part_name(index) / "index.json");
}

// The options that change what a part holds, by their flags: kept in each part's prepare.json,
// so that a rerun with other ones is refused instead of mixing two kinds of sample.
io::Json content_settings(const PrepareOptions& options) {
  io::Json settings = io::Json::object();
  settings["--resolutions"] = options.resolutions;
  settings["--min-size"] = options.min_size;
  settings["--no-clean"] = !options.clean_captions;
  settings["--seed"] = options.seed;
  return settings;
}

// A complete part made with other settings (parts from before the settings were kept pass).
void check_part_settings(const fs::path& out, int64_t index, const io::Json& settings) {
  const fs::path stats = out / part_name(index) / "prepare.json";
  const io::Json recorded = io::read_json_file(stats);
  if (!recorded.is_object() || !recorded.contains("settings")) return;
  const io::Json& previous = recorded.at("settings");
  for (const auto& [flag, value] : settings.items()) {
    const bool known = previous.is_object() && previous.contains(flag);
    if (!known || previous.at(flag) != value) {
      throw std::invalid_argument(c10::str(
          stats.string(), ": this part was prepared with ", flag, " ",
          known ? previous.at(flag).dump() : "(none)", ", this run asks for ", value.dump(),
          ": give the same options to continue it, or another --out"));
    }
  }
}

// Writes one part under part-NNNNN.partial/, then renames it: a part directory is complete.
void write_part(const PreparePart& part, const PrepareOptions& options, encoders::PipelineEncoders& encoders,
                PrepareReport& report) {
  const fs::path partial = options.out / (part_name(part.index) + ".partial");
  util::remove_tree(partial);
  at::manual_seed(static_cast<uint64_t>(options.seed + part.index));
  PartWriter writer(partial, options, encoders);
  std::vector<RawSample> batch;
  for_each_raw_sample(part, [&](RawSample&& raw) {
    batch.push_back(std::move(raw));
    if (static_cast<int64_t>(batch.size()) == options.batch_size) writer.write_batch(batch);
  });
  writer.write_batch(batch);
  writer.finish();
  io::Json stats = io::Json::object();
  stats["source"] = part.describe();
  stats["samples"] = writer.written;
  stats["skipped"] = writer.skipped;
  stats["settings"] = content_settings(options);
  io::write_file_atomically(partial / "prepare.json",
                            [&](std::ostream& out) { out << stats.dump() << "\n"; });
  fs::rename(partial, options.out / part_name(part.index));
  report.samples_written += writer.written;
  report.skipped += writer.skipped;
}

}  // namespace

bool merge_prepared_parts(const fs::path& out, int64_t parts) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < parts; ++i) {
    if (!part_complete(out, i)) return false;
    names.push_back(part_name(i));
  }
  merge_index(out, names);
  return true;
}

PrepareReport prepare_dataset(const PrepareOptions& options, encoders::PipelineEncoders& encoders) {
  if (options.num_processes < 1 || options.process_index < 0 ||
      options.process_index >= options.num_processes) {
    throw std::invalid_argument(c10::str("process ", options.process_index, " of ",
                                         options.num_processes, " is not a valid split"));
  }
  const auto parts = plan_parts(options.inputs, options.sources);
  fs::create_directories(options.out);
  PrepareReport report;
  report.parts = static_cast<int64_t>(parts.size());
  std::vector<const PreparePart*> todo;
  for (const auto& part : parts) {
    if (part.index % options.num_processes != options.process_index) continue;
    ++report.parts_mine;
    if (part_complete(options.out, part.index)) {
      check_part_settings(options.out, part.index, content_settings(options));
      ++report.parts_resumed;
    } else {
      todo.push_back(&part);
    }
  }
  spdlog::info("{} parts in all; this process ({} of {}) has {}, {} already complete", report.parts,
               options.process_index, options.num_processes, report.parts_mine,
               report.parts_resumed);
  const auto start = std::chrono::steady_clock::now();
  auto last_log = start;
  for (std::size_t i = 0; i < todo.size(); ++i) {
    write_part(*todo[i], options, encoders, report);
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start).count();
    if (std::chrono::duration<double>(now - last_log).count() >= options.progress_seconds ||
        i + 1 == todo.size()) {
      const double eta = elapsed / static_cast<double>(i + 1) * static_cast<double>(todo.size() - i - 1);
      spdlog::info("part {}/{} done | {} samples, {} skipped | {:.1f} samples/s | ETA {}", i + 1,
                   todo.size(), report.samples_written, report.skipped,
                   static_cast<double>(report.samples_written) / std::max(elapsed, 1e-9),
                   util::format_duration(eta));
      last_log = now;
    }
  }
  report.merged = merge_prepared_parts(options.out, report.parts);
  return report;
}

}  // namespace microdit::data
