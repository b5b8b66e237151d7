// Sequential tar reading for WebDataset shards (image + caption collections), without extracting
// to disk. Reads POSIX ustar (name prefix), GNU (long names in 'L' entries, base-256 sizes) and
// pax ('x' headers with path/size records; 'g' global headers ignored) archives, as Python's
// tarfile writes them. Only regular files are returned; directories, links and devices are
// skipped. Errors are std::runtime_error whose message starts with the archive path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

namespace microdit::data {

struct TarMember {
  std::string name;  // full path inside the archive, as tarfile's TarInfo.name
  std::string data;
};

class TarReader {
 public:
  explicit TarReader(const std::filesystem::path& path);

  // The next regular file, or std::nullopt at the end (a zero block or the end of the file).
  // Throws on a bad header checksum (naming the byte offset) and on a header or member data
  // running past the end of the file ("truncated", naming the member).
  std::optional<TarMember> next();

 private:
  struct Header;
  std::optional<Header> read_header();
  std::string read_data(const std::string& member, uint64_t size);
  void skip_data(const std::string& member, uint64_t size);
  // Throws "truncated" unless `size` bytes of `member` follow in the file.
  void require(const std::string& member, uint64_t size) const;

  std::filesystem::path path_;
  std::ifstream in_;
  uint64_t file_size_ = 0;
  uint64_t offset_ = 0;  // of the next header
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
