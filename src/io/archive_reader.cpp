#include "microdit/io/archive_reader.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <system_error>

#ifdef MICRODIT_HAVE_LIBARCHIVE
#include <archive.h>
#include <archive_entry.h>
#endif

namespace microdit::io {

#ifdef MICRODIT_HAVE_LIBARCHIVE

void ArchiveReader::Closer::operator()(archive* reader) const { archive_read_free(reader); }

void ArchiveReader::set_up(int64_t size) {
  archive_.reset(archive_read_new());
  if (!archive_) throw std::runtime_error(path_.string() + ": cannot allocate a libarchive reader");
  archive* const reader = archive_.get();
  if (format_ == Format::tar) {
    archive_read_support_format_tar(reader);
    // An empty file (a shard writer that got no samples) is an archive without members.
    archive_read_support_format_empty(reader);
    archive_read_support_filter_gzip(reader);
    // ARCHIVE_WARN when libarchive has no libzstd and runs the zstd program instead: fine too.
    archive_read_support_filter_zstd(reader);
  } else {
    archive_read_support_format_zip(reader);
  }
  file_size_ = size;
}

void ArchiveReader::throw_cannot_open() const {
  throw std::runtime_error(error(std::string("cannot open as a ") +
                                 (format_ == Format::tar ? "tar" : "zip") + " archive"));
}

ArchiveReader::ArchiveReader(const std::filesystem::path& path, Format format)
    : path_(path), format_(format) {
  std::error_code ignored;  // a missing file is reported by the open below
  set_up(static_cast<int64_t>(std::filesystem::file_size(path, ignored)));
  // Opening reads the first bytes to recognise the format and the compression.
  if (archive_read_open_filename(archive_.get(), path.c_str(), 64 * 1024) != ARCHIVE_OK) {
    throw_cannot_open();
  }
}

ArchiveReader::ArchiveReader(std::string_view bytes, const std::string& name_for_errors,
                             Format format)
    : path_(name_for_errors), format_(format) {
  set_up(static_cast<int64_t>(bytes.size()));
  if (archive_read_open_memory(archive_.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    throw_cannot_open();
  }
}

std::string ArchiveReader::error(const std::string& what) const {
  const char* reason = archive_error_string(archive_.get());
  return path_.string() + ": " + what + ": " + (reason != nullptr ? reason : "unknown error");
}

std::optional<ArchiveReader::Entry> ArchiveReader::next() {
  if (at_end_) return std::nullopt;  // libarchive refuses to read past its end
  archive_entry* entry = nullptr;
  const int status = archive_read_next_header(archive_.get(), &entry);
  if (status == ARCHIVE_EOF) {
    at_end_ = true;
    return std::nullopt;
  }
  // ARCHIVE_WARN still gives a usable entry, e.g. a UTF-8 pax path that the C locale cannot
  // represent (its name is then kept as the UTF-8 bytes). ARCHIVE_RETRY, a damaged header that
  // libarchive could skip, is an error here as for the others.
  if (status != ARCHIVE_OK && status != ARCHIVE_WARN) {
    throw std::runtime_error(error(last_name_.empty() ? std::string("cannot read the first header")
                                                      : "cannot read the header after member '" +
                                                            last_name_ + "'"));
  }
  const char* utf8 = archive_entry_pathname_utf8(entry);
  const char* name = utf8 != nullptr ? utf8 : archive_entry_pathname(entry);
  last_name_ = name != nullptr ? name : "";
  header_offset_ = archive_read_header_position(archive_.get());
  // tarfile's isreg(): libarchive reports a tar hard link as a file that names its target.
  const bool regular =
      archive_entry_filetype(entry) == AE_IFREG && archive_entry_hardlink(entry) == nullptr;
  return Entry{last_name_, regular,
               archive_entry_size_is_set(entry) ? archive_entry_size(entry) : int64_t{-1}};
}

std::string ArchiveReader::read(const Entry& entry) {
  const std::string where = "member '" + entry.name + "'";
  // Only an uncompressed tar's file size bounds what a member may hold.
  const bool plain_tar =
      format_ == Format::tar && archive_filter_code(archive_.get(), 0) == ARCHIVE_FILTER_NONE;
  const int64_t limit = plain_tar ? file_size_ - header_offset_ : kMaxUnboundedSize;
  if (entry.size < 0) throw std::runtime_error(path_.string() + ": " + where + " has no size");
  if (entry.size > limit) {
    throw std::runtime_error(
        path_.string() + ": " + where + " declares " + std::to_string(entry.size) + " bytes, " +
        (plain_tar ? "but only " + std::to_string(limit) + " follow its header in the file"
                   : "more than the " + std::to_string(limit) +
                         " allowed for an entry of a compressed or zip archive"));
  }
  // Grown as the data comes, to the end (where libarchive checks a zip entry's CRC): a declared
  // size is only a claim, which a damaged zip or compressed tar may make up to the limit above.
  std::string data;
  data.reserve(static_cast<std::size_t>(std::min<int64_t>(entry.size, int64_t{1} << 20)));
  std::array<char, 1 << 16> chunk;
  for (;;) {
    const la_ssize_t got = archive_read_data(archive_.get(), chunk.data(), chunk.size());
    if (got < 0) throw std::runtime_error(error(where));
    if (got == 0) break;
    if (static_cast<int64_t>(data.size()) + got > entry.size) {
      throw std::runtime_error(path_.string() + ": " + where + " holds more than its declared " +
                               std::to_string(entry.size) + " bytes");
    }
    data.append(chunk.data(), static_cast<std::size_t>(got));
  }
  if (static_cast<int64_t>(data.size()) < entry.size) {
    throw std::runtime_error(path_.string() + ": " + where + " ends after " +
                             std::to_string(data.size()) + " of its " +
                             std::to_string(entry.size) + " bytes");
  }
  return data;
}

#else  // no libarchive: the constructor says so, and nothing else can be reached

void ArchiveReader::Closer::operator()(archive*) const {}

void ArchiveReader::set_up(int64_t) {
  throw std::runtime_error(path_.string() +
                           ": this build has no libarchive (apt install libarchive-dev)");
}
void ArchiveReader::throw_cannot_open() const { throw std::runtime_error(path_.string()); }

ArchiveReader::ArchiveReader(const std::filesystem::path& path, Format format)
    : path_(path), format_(format) {
  set_up(0);
}

ArchiveReader::ArchiveReader(std::string_view, const std::string& name_for_errors, Format format)
    : path_(name_for_errors), format_(format) {
  set_up(0);
}

std::string ArchiveReader::error(const std::string& what) const { return what; }
std::optional<ArchiveReader::Entry> ArchiveReader::next() { return std::nullopt; }
std::string ArchiveReader::read(const Entry&) { return {}; }

#endif

}  // namespace microdit::io
