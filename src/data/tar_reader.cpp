// The tar format is libarchive's (io::ArchiveReader); the WebDataset grouping below stays our own:
// it is the Python webdataset library's convention, with no C or C++ library, in a few lines.
#include "microdit/data/tar_reader.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace microdit::data {

bool is_tar_file(const std::filesystem::path& path) {
  std::string name = path.filename().string();
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz") ||
         name.ends_with(".tar.zst");
}

std::optional<TarMember> TarReader::next() {
  while (auto entry = archive_.next()) {
    if (entry->regular_file) return TarMember{entry->name, archive_.read(*entry)};
  }
  return std::nullopt;
}

// ------------------------------------------------------------------------------ WebDataset

namespace {

// webdataset's base_plus_ext(): key = path up to the first '.' of the basename, extension = the
// rest. Basenames starting with '.' (".DS_Store") have no key here; the library's regex would
// give key "dir/" for "dir/.DS_Store".
std::optional<std::pair<std::string, std::string>> split_key(const std::string& name) {
  const std::size_t base = name.rfind('/') + 1;  // 0 when there is no '/'
  const std::size_t dot = name.find('.', base);
  if (dot == std::string::npos || dot == base) return std::nullopt;
  std::string extension = name.substr(dot + 1);
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::pair{name.substr(0, dot), std::move(extension)};
}

}  // namespace

std::optional<WebDatasetReader::Entry> WebDatasetReader::next_entry() {
  if (pending_) return std::exchange(pending_, std::nullopt);
  while (auto member = tar_.next()) {
    if (auto split = split_key(member->name)) {
      return Entry{std::move(split->first), std::move(split->second), std::move(member->data)};
    }
    ++skipped_;
  }
  return std::nullopt;
}

std::optional<WebDatasetSample> WebDatasetReader::next_sample() {
  std::optional<WebDatasetSample> sample;
  while (auto entry = next_entry()) {
    if (!sample) {
      sample = WebDatasetSample{entry->key, {}};
    } else if (entry->key != sample->key || sample->files.count(entry->extension)) {
      pending_ = std::move(entry);
      break;
    }
    sample->files.emplace(std::move(entry->extension), std::move(entry->data));
  }
  return sample;
}

}  // namespace microdit::data
