// Whole-file reads in binary mode, with errors that name the file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace microdit::io {

// The bytes of `path`; std::runtime_error "<path>: cannot open (<reason>)" when unreadable.
std::string read_file(const std::filesystem::path& path);

// The same, refused before reading when the file holds more than `max_bytes`:
// "<path>: <n> bytes, more than the <max_bytes> allowed for <what>".
std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                      std::string_view what);

// The same message, for data (decompressed, or already read) over a bound.
[[noreturn]] void throw_too_large(const std::string& name, std::uint64_t bytes,
                                  std::uint64_t max_bytes, std::string_view what);

}  // namespace microdit::io
