// Whole-file reads in binary mode, with errors that name the file.
#pragma once
#include <filesystem>
#include <string>

namespace microdit::io {

// The bytes of `path`; std::runtime_error "<path>: cannot open (<reason>)" when unreadable.
std::string read_file(const std::filesystem::path& path);

}  // namespace microdit::io
