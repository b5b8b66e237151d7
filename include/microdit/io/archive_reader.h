// Sequential reading of archives through libarchive, without extracting to disk: tar (plain, or
// compressed with gzip or zstd) and zip (stored or deflated entries). Data is read in a bounded
// way: an entry's declared size is checked before anything is allocated. Errors are one-line
// std::runtime_error messages starting with the archive's path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct archive;  // libarchive's reader

namespace microdit::io {

class ArchiveReader {
 public:
  enum class Format { tar, zip };

  struct Entry {
    std::string name;   // path inside the archive, its bytes as stored (UTF-8 for pax and zip)
    bool regular_file;  // false for directories, symbolic and hard links, devices
    int64_t size;       // declared size of the data
  };

  // Throws "<path>: this build has no libarchive (apt install libarchive-dev)" in a build
  // without it (MICRODIT_HAVE_LIBARCHIVE undefined).
  ArchiveReader(const std::filesystem::path& path, Format format);
  // An archive already in memory (`bytes` must outlive the reader); errors start with
  // `name_for_errors`.
  ArchiveReader(std::string_view bytes, const std::string& name_for_errors, Format format);

  // The next entry's header, or std::nullopt at the end. The previous entry's data is skipped
  // if it was not read.
  std::optional<Entry> next();

  // The data of the entry next() has just returned. Refused before reading when its size is
  // more than the rest of an uncompressed tar after its header, or more than kMaxUnboundedSize
  // where the file's size says nothing (compressed tars, zip entries).
  std::string read(const Entry& entry);

  static constexpr int64_t kMaxUnboundedSize = int64_t{1} << 30;

 private:
  struct Closer {
    void operator()(archive* reader) const;
  };
  // A libarchive reader for format_; `size` is the file's.
  void set_up(int64_t size);
  // "<path>: " and what libarchive says went wrong, as one line.
  std::string error(const std::string& what) const;
  [[noreturn]] void throw_cannot_open() const;

  std::filesystem::path path_;
  Format format_;
  std::unique_ptr<archive, Closer> archive_;
  int64_t file_size_ = 0;
  int64_t header_offset_ = 0;  // of the current entry, in the uncompressed stream
  std::string last_name_;      // of the last entry read, to locate a damaged header after it
  bool at_end_ = false;
};

}  // namespace microdit::io
