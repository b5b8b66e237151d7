#include "microdit/data/prepare_sources.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/data/tar_reader.h"
#include "microdit/io/json.h"
#include "microdit/io/read_file.h"
#include "microdit/util/error_message.h"

namespace microdit::data {
namespace fs = std::filesystem;
namespace {

const std::vector<std::string> kImageColumns{"image", "image_path", "file_name", "filename",
                                             "path"};
const std::vector<std::string> kCaptionColumns{"caption", "text", "prompt"};

std::string lower_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// The column to use: the one asked for, else the first known name present.
std::size_t pick_column(const std::vector<std::string>& header, const std::string& wanted,
                        const std::vector<std::string>& known, const fs::path& file,
                        const char* what) {
  for (const auto& name : wanted.empty() ? known : std::vector<std::string>{wanted}) {
    auto it = std::find(header.begin(), header.end(), name);
    if (it != header.end()) return static_cast<std::size_t>(it - header.begin());
  }
  throw std::runtime_error(c10::str(file.string(), ": no ", what, " column (looked for ",
                                    c10::Join(", ", wanted.empty() ? known : std::vector{wanted}),
                                    "; the file has ", c10::Join(", ", header), ")"));
}

// RFC 4180 records: fields separated by commas, quoted fields may hold commas, doubled quotes
// and line breaks. Returns each record with the line it starts on.
std::vector<std::pair<int64_t, std::vector<std::string>>> parse_csv(const std::string& text) {
  std::vector<std::pair<int64_t, std::vector<std::string>>> records;
  std::vector<std::string> fields(1);
  bool quoted = false;
  int64_t line = 1, record_line = 1;
  auto end_record = [&] {
    if (!(fields.size() == 1 && fields[0].empty())) records.emplace_back(record_line, fields);
    fields.assign(1, "");
    record_line = line;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '\n') {
      end_record();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  end_record();
  return records;
}

fs::path resolve(const fs::path& base, const std::string& image) {
  const fs::path p(image);
  return p.is_absolute() ? p : base / p;
}

std::vector<ListEntry> read_csv(const fs::path& file, const SourceOptions& options) {
  auto records = parse_csv(io::read_file(file));
  if (records.empty()) throw std::runtime_error(c10::str(file.string(), ": empty CSV file"));
  const auto& header = records.front().second;
  const auto image = pick_column(header, options.image_column, kImageColumns, file, "image");
  const auto caption = pick_column(header, options.caption_column, kCaptionColumns, file, "caption");
  std::vector<ListEntry> entries;
  for (std::size_t r = 1; r < records.size(); ++r) {
    const auto& [line, fields] = records[r];
    if (fields.size() != header.size()) {
      throw std::runtime_error(c10::str(file.string(), ":", line, ": ", fields.size(),
                                        " fields, the header has ", header.size()));
    }
    entries.push_back({resolve(file.parent_path(), fields[image]), fields[caption]});
  }
  return entries;
}

std::string json_field(const io::Json& object, const std::string& wanted,
                       const std::vector<std::string>& known, const fs::path& file, int64_t line,
                       const char* what) {
  for (const auto& name : wanted.empty() ? known : std::vector<std::string>{wanted}) {
    if (const io::Json* v = io::json_find(object, name); v != nullptr && v->is_string()) {
      return io::json_to_string(*v);
    }
  }
  throw std::runtime_error(c10::str(file.string(), ":", line, ": no ", what, " string (looked for ",
                                    c10::Join(", ", wanted.empty() ? known : std::vector{wanted}),
                                    ")"));
}

std::vector<ListEntry> read_jsonl(const fs::path& file, const SourceOptions& options) {
  std::istringstream lines(io::read_file(file));
  std::vector<ListEntry> entries;
  std::string text;
  for (int64_t line = 1; std::getline(lines, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const io::Json object = io::parse_json(text, c10::str(file.string(), ":", line));
    if (!object.is_object()) {
      throw std::runtime_error(c10::str(file.string(), ":", line, ": expected a JSON object"));
    }
    entries.push_back(
        {resolve(file.parent_path(),
                 json_field(object, options.image_column, kImageColumns, file, line, "image")),
         json_field(object, options.caption_column, kCaptionColumns, file, line, "caption")});
  }
  return entries;
}

// Images under `dir` (sorted, recursive) with their caption files, and the tars found there.
void scan_folder(const fs::path& dir, std::vector<ListEntry>& entries, std::vector<fs::path>& tars) {
  std::vector<fs::path> files;
  for (const auto& item : fs::recursive_directory_iterator(dir)) {
    if (item.is_regular_file()) files.push_back(item.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    const auto ext = lower_extension(file);
    if (is_tar_file(file)) tars.push_back(file);
    if (is_image_extension(ext)) entries.push_back({file, ""});  // caption read with the image
  }
}

void add_entries(std::vector<PreparePart>& parts, std::vector<ListEntry> entries, int64_t per_part) {
  for (std::size_t start = 0; start < entries.size(); start += per_part) {
    PreparePart part;
    part.index = static_cast<int64_t>(parts.size());
    const auto end = std::min(entries.size(), start + static_cast<std::size_t>(per_part));
    part.entries.assign(std::make_move_iterator(entries.begin() + start),
                        std::make_move_iterator(entries.begin() + end));
    parts.push_back(std::move(part));
  }
}

void add_tar(std::vector<PreparePart>& parts, const fs::path& tar) {
  PreparePart part;
  part.index = static_cast<int64_t>(parts.size());
  part.tar = tar;
  parts.push_back(std::move(part));
}

std::string caption_of(const WebDatasetSample& sample) {
  if (auto it = sample.files.find("txt"); it != sample.files.end()) return it->second;
  if (auto it = sample.files.find("json"); it != sample.files.end()) {
    const io::Json meta = io::parse_json(it->second, ".json member");
    if (const io::Json* c = io::json_find(meta, "caption"); c != nullptr && c->is_string()) {
      return io::json_to_string(*c);
    }
  }
  throw std::runtime_error("no .txt member and no \"caption\" in a .json member");
}

void tar_samples(const fs::path& tar, const std::function<void(RawSample&&)>& consume) {
  WebDatasetReader reader(tar);
  while (auto sample = reader.next_sample()) {
    RawSample raw;
    raw.name = c10::str(tar.string(), ":", sample->key);
    auto image = std::find_if(sample->files.begin(), sample->files.end(),
                              [](const auto& f) { return is_image_extension(f.first); });
    try {
      if (image == sample->files.end()) throw std::runtime_error("no image member");
      raw.caption = caption_of(*sample);
      raw.image_bytes = std::move(image->second);
    } catch (const std::exception& e) {
      raw.error = util::error_message(e);
    }
    consume(std::move(raw));
  }
}

// A caption is a sentence or a paragraph; a larger file is not one (nor worth holding in memory).
constexpr std::uint64_t kMaxCaptionBytes = std::uint64_t{1} << 20;

void list_samples(const PreparePart& part, const std::function<void(RawSample&&)>& consume) {
  for (const auto& entry : part.entries) {
    RawSample raw;
    raw.name = entry.image.string();
    try {
      raw.caption = entry.caption;
      if (raw.caption.empty()) {  // a folder input: the caption file beside the image
        auto caption_file = fs::path(entry.image).replace_extension(".txt");
        if (!fs::exists(caption_file)) throw std::runtime_error("no caption file " + caption_file.string());
        raw.caption = io::read_file(caption_file, kMaxCaptionBytes, "a caption file");
      }
      raw.image_bytes = io::read_file(entry.image);
    } catch (const std::exception& e) {
      raw.error = util::error_message(e);
    }
    consume(std::move(raw));
  }
}

}  // namespace

bool is_image_extension(const std::string& extension) {
  static const std::vector<std::string> known{"jpg", "jpeg", "png", "webp", "bmp"};
  return std::find(known.begin(), known.end(), extension) != known.end();
}

bool is_image_file(const fs::path& path) { return is_image_extension(lower_extension(path)); }

std::string PreparePart::describe() const {
  if (!tar.empty()) return tar.string();
  if (entries.empty()) return "(empty)";
  return c10::str(entries.front().image.string(), " .. ", entries.back().image.string(), " (",
                  entries.size(), " images)");
}

std::vector<PreparePart> plan_parts(const std::vector<fs::path>& inputs,
                                    const SourceOptions& options) {
  if (options.entries_per_part <= 0) {
    throw std::invalid_argument("entries_per_part must be positive");
  }
  std::vector<PreparePart> parts;
  for (const auto& input : inputs) {
    if (!fs::exists(input)) throw std::runtime_error(c10::str(input.string(), ": no such file or folder"));
    const auto ext = lower_extension(input);
    if (fs::is_directory(input)) {
      std::vector<ListEntry> entries;
      std::vector<fs::path> tars;
      scan_folder(input, entries, tars);
      if (entries.empty() && tars.empty()) {
        throw std::runtime_error(c10::str(input.string(), ": no images and no .tar files in this folder"));
      }
      add_entries(parts, std::move(entries), options.entries_per_part);
      for (const auto& tar : tars) add_tar(parts, tar);
    } else if (ext == "csv") {
      add_entries(parts, read_csv(input, options), options.entries_per_part);
    } else if (ext == "jsonl") {
      add_entries(parts, read_jsonl(input, options), options.entries_per_part);
    } else if (is_tar_file(input)) {
      add_tar(parts, input);
    } else {
      throw std::runtime_error(c10::str(input.string(), ": unknown input type (expected a folder, ",
                                        ".csv, .jsonl, .tar, .tar.gz or .tar.zst)"));
    }
  }
  return parts;
}

void for_each_raw_sample(const PreparePart& part, const std::function<void(RawSample&&)>& consume) {
  if (!part.tar.empty()) {
    tar_samples(part.tar, consume);
  } else {
    list_samples(part, consume);
  }
}

}  // namespace microdit::data
