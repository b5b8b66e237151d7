// Sequential tar reading for WebDataset shards (image + caption collections), without extracting
// to disk, through libarchive: plain tars and tars compressed with gzip or zstd; POSIX ustar
// (name prefix), GNU (long names, base-256 sizes) and pax (path and size records) headers, as
// Python's tarfile writes them. Only regular files are returned; directories, links and devices
// are skipped. Errors are std::runtime_error whose message starts with the archive path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "microdit/io/archive_reader.h"

namespace microdit::data {

// The file names read as tar archives: .tar, .tar.gz, .tgz and .tar.zst (any letter case).
bool is_tar_file(const std::filesystem::path& path);

struct TarMember {
  std::string name;  // full path inside the archive, as tarfile's TarInfo.name
  std::string data;
};

class TarReader {
 public:
  // Throws when the file cannot be opened as a tar, and in a build without libarchive.
  explicit TarReader(const std::filesystem::path& path)
      : archive_(path, io::ArchiveReader::Format::tar) {}
  // A tar already in memory (`bytes` must outlive the reader); errors start with `name`.
  TarReader(std::string_view bytes, const std::string& name)
      : archive_(bytes, name, io::ArchiveReader::Format::tar) {}

  // The next regular file, or std::nullopt at the end. Throws on a damaged header (naming the
  // member before it), on member data that is cut short (naming the member), and on a member
  // declaring more bytes than the file holds after its header.
  std::optional<TarMember> next();

 private:
  io::ArchiveReader archive_;
};

// One WebDataset sample: the consecutive members sharing a key.
struct WebDatasetSample {
  std::string key;                           // e.g. "dir/00002"
  std::map<std::string, std::string> files;  // extension ("jpg", "seg.png") -> bytes
};

// Groups a tar's members into samples as the webdataset library does (tariterators.py,
// base_plus_ext and group_by_keys): key = the member path up to the first '.' of its basename,
// extension = the rest, lowercased; a new sample starts when the key changes or an extension
// repeats. Members without a '.' in the basename, or whose basename starts with '.', are skipped.
class WebDatasetReader {
 public:
  explicit WebDatasetReader(const std::filesystem::path& path) : tar_(path) {}
  WebDatasetReader(std::string_view bytes, const std::string& name) : tar_(bytes, name) {}

  std::optional<WebDatasetSample> next_sample();

  // Regular members skipped so far for having no usable key and extension.
  int64_t skipped() const { return skipped_; }

 private:
  struct Entry {
    std::string key, extension, data;
  };
  std::optional<Entry> next_entry();

  TarReader tar_;
  std::optional<Entry> pending_;  // read ahead: the first entry of the next sample
  int64_t skipped_ = 0;
};

}  // namespace microdit::data
