// Tar layout: POSIX.1-2001 (ustar header, pax extended headers) and GNU tar's extensions, read
// the way CPython's Lib/tarfile.py does (TarInfo.frombuf, _proc_member and friends), except that
// damage is an error here where tarfile silently stops at a bad header after the first.
#include "microdit/data/tar_reader.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace microdit::data {

namespace {

constexpr uint64_t kBlock = 512;

struct Field {
  std::size_t offset, size;
};
constexpr Field kName{0, 100}, kSize{124, 12}, kChecksum{148, 8}, kType{156, 1}, kMagic{257, 6},
    kPrefix{345, 155};

using Block = std::array<char, kBlock>;

std::string_view field(const Block& block, Field f) { return {block.data() + f.offset, f.size}; }

// tarfile's nts(): the text up to the first NUL.
std::string until_nul(std::string_view text) {
  return std::string(text.substr(0, text.find('\0')));
}

uint64_t padded(uint64_t size) { return (size + kBlock - 1) / kBlock * kBlock; }

// tarfile's nti(): octal digits (NUL/space terminated or padded), or GNU base-256 — a first byte
// 0x80 then big-endian bytes — which GNU tar writes for sizes of 8 GiB and more.
std::optional<uint64_t> parse_number(std::string_view text) {
  const auto first = static_cast<unsigned char>(text[0]);
  if (first == 0x80) {
    uint64_t value = 0;
    for (std::size_t i = 1; i < text.size(); ++i) {
      if (value >> 56) return std::nullopt;
      value = (value << 8) | static_cast<unsigned char>(text[i]);
    }
    return value;
  }
  std::string_view digits = text.substr(0, text.find('\0'));
  while (!digits.empty() && digits.front() == ' ') digits.remove_prefix(1);
  while (!digits.empty() && digits.back() == ' ') digits.remove_suffix(1);
  if (digits.empty()) return 0;
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 8);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// The header checksum is the sum of its bytes with the checksum field read as spaces. Like
// tarfile, accept the sum of signed chars too (written by some historic tars).
bool checksum_ok(const Block& block) {
  const auto stored = parse_number(field(block, kChecksum));
  if (!stored) return false;
  int64_t unsigned_sum = 0, signed_sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.size;
    const char c = in_field ? ' ' : block[i];
    unsigned_sum += static_cast<unsigned char>(c);
    signed_sum += static_cast<signed char>(c);
  }
  return static_cast<int64_t>(*stored) == unsigned_sum ||
         static_cast<int64_t>(*stored) == signed_sum;
}

bool is_zero(const Block& block) {
  return std::all_of(block.begin(), block.end(), [](char c) { return c == 0; });
}

// Types whose size field counts data blocks that follow; links, directories and devices have
// none whatever their size field says (tarfile skips data only for the others).
bool has_data(char type) { return type < '1' || type > '6'; }

// What a pax extended header changes in the member after it (the records tarfile applies).
struct PaxOverrides {
  std::optional<std::string> path;
  std::optional<uint64_t> size;  // for members of 8 GiB and more
};

// Applies the records of a pax header, each "<length> <key>=<value>\n" with the length counting
// the whole record.
void apply_pax(std::string_view data, const std::string& where, PaxOverrides& pax) {
  while (!data.empty()) {
    std::size_t length = 0;
    const auto [end, error] = std::from_chars(data.data(), data.data() + data.size(), length);
    const std::size_t head = static_cast<std::size_t>(end - data.data());
    const std::string_view record = error == std::errc() && length > head && length <= data.size()
                                        ? data.substr(0, length)
                                        : std::string_view();
    const std::size_t equals = record.find('=');
    if (record.empty() || record[head] != ' ' || record.back() != '\n' ||
        equals == std::string_view::npos) {
      throw std::runtime_error(where + ": malformed pax extended header");
    }
    const std::string_view key = record.substr(head + 1, equals - head - 1);
    const std::string_view value = record.substr(equals + 1, length - equals - 2);
    if (key == "path") pax.path = std::string(value);
    if (key == "size") {
      uint64_t size = 0;
      const auto parsed = std::from_chars(value.data(), value.data() + value.size(), size);
      if (parsed.ec != std::errc() || parsed.ptr != value.data() + value.size()) {
        throw std::runtime_error(where + ": bad size in pax extended header");
      }
      pax.size = size;
    }
    data.remove_prefix(length);
  }
}

}  // namespace

struct TarReader::Header {
  std::string name;  // name field, joined to the ustar prefix
  char type = '0';
  uint64_t size = 0;
};

TarReader::TarReader(const std::filesystem::path& path) : path_(path) {
  in_.open(path, std::ios::binary);
  if (!in_) throw std::runtime_error(path.string() + ": cannot open tar file");
  file_size_ = std::filesystem::file_size(path);
}

std::optional<TarMember> TarReader::next() {
  // Meta entries describe the header after them: pax 'x' records win over a GNU 'L' long name,
  // as in tarfile where the pax header is applied to the member read after it.
  PaxOverrides pax;
  std::optional<std::string> gnu_name;
  while (auto header = read_header()) {
    const std::string name = pax.path.value_or(gnu_name.value_or(header->name));
    if (header->type == 'L') {
      gnu_name = until_nul(read_data(name, header->size));
    } else if (header->type == 'x') {
      apply_pax(read_data(name, header->size), path_.string() + ": " + name, pax);
    } else if (header->type == 'S') {
      throw std::runtime_error(path_.string() + ": " + name +
                               ": GNU sparse members are not supported");
    } else {
      const uint64_t size = pax.size.value_or(header->size);
      // Old tars mark directories as regular files whose name ends in '/'.
      const bool regular = header->type == '0' || header->type == '7' ||
                           (header->type == '\0' && !name.ends_with('/'));
      if (regular) return TarMember{name, read_data(name, size)};
      if (has_data(header->type)) skip_data(name, size);  // 'g', 'K' and unknown types too
      pax = {};
      gnu_name.reset();
    }
  }
  if (pax.path || gnu_name) {  // a long name whose member never came
    throw std::runtime_error(path_.string() + ": member '" + (pax.path ? *pax.path : *gnu_name) +
                             "' is truncated: the archive ends before its header");
  }
  return std::nullopt;
}

std::optional<TarReader::Header> TarReader::read_header() {
  Block block{};
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(offset_));
  in_.read(block.data(), kBlock);
  const auto got = static_cast<uint64_t>(in_.gcount());
  // The end: no more data, or the zero blocks that close an archive (tarfile and GNU tar stop
  // at the first one too).
  if (got == 0 || (got == kBlock && is_zero(block))) return std::nullopt;
  const std::string where =
      path_.string() + ": tar header at byte offset " + std::to_string(offset_);
  if (got < kBlock) {
    throw std::runtime_error(where + " is truncated (" + std::to_string(got) + " of 512 bytes)");
  }
  if (!checksum_ok(block)) throw std::runtime_error(where + " has a bad checksum");
  const auto size = parse_number(field(block, kSize));
  if (!size) throw std::runtime_error(where + " has an invalid size field");
  Header header{until_nul(field(block, kName)), field(block, kType)[0], *size};
  // POSIX ustar keeps the leading directories of long names in the prefix field (GNU tar uses
  // those bytes for other things and has a different magic).
  const std::string prefix = until_nul(field(block, kPrefix));
  if (field(block, kMagic) == std::string_view("ustar\0", 6) && !prefix.empty()) {
    header.name = prefix + "/" + header.name;
  }
  offset_ += kBlock;
  return header;
}

std::string TarReader::read_data(const std::string& member, uint64_t size) {
  require(member, size);  // before allocating: a damaged size field could ask for petabytes
  std::string data(size, '\0');
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(offset_));
  in_.read(data.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in_.gcount()) != size) {
    throw std::runtime_error(path_.string() + ": member '" + member +
                             "' is truncated: the file shrank while it was read");
  }
  offset_ += padded(size);
  return data;
}

void TarReader::skip_data(const std::string& member, uint64_t size) {
  require(member, size);
  offset_ += padded(size);
}

void TarReader::require(const std::string& member, uint64_t size) const {
  // A missing final padding is not an error (tarfile does not check it either).
  if (offset_ + size > file_size_ || size > file_size_) {
    throw std::runtime_error(path_.string() + ": member '" + member + "' is truncated: its " +
                             std::to_string(size) + " bytes at offset " + std::to_string(offset_) +
                             " run past the end of the file (" + std::to_string(file_size_) +
                             " bytes)");
  }
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
