#include "microdit/io/read_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>

namespace microdit::io {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error(path.string() + ": cannot open (" + std::strerror(errno) + ")");
  }
  // A directory opens, and its first read throws libstdc++'s "basic_filebuf::underflow ...".
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw std::runtime_error(path.string() + ": is a directory, not a file");
  }
  try {
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  } catch (const std::exception& e) {
    throw std::runtime_error(path.string() + ": cannot read (" + e.what() + ")");
  }
}

std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                      std::string_view what) {
  std::error_code error;  // unreadable files are reported by the read below
  const std::uintmax_t size = std::filesystem::file_size(path, error);
  if (!error && size > max_bytes) throw_too_large(path.string(), size, max_bytes, what);
  std::string bytes = read_file(path);
  // A file that grew between the two looks, or one without a size (a pipe).
  if (bytes.size() > max_bytes) throw_too_large(path.string(), bytes.size(), max_bytes, what);
  return bytes;
}

void throw_too_large(const std::string& name, std::uint64_t bytes, std::uint64_t max_bytes,
                     std::string_view what) {
  throw std::runtime_error(name + ": " + std::to_string(bytes) + " bytes, more than the " +
                           std::to_string(max_bytes) + " allowed for " + std::string(what));
}

}  // namespace microdit::io
