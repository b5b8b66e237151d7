// Crash-safe file replacement: a reader sees either the old file or the complete new one.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>

namespace microdit::io {

// Calls `write` with a binary stream on `<target>.tmp.<pid>`, fsyncs it, renames it over
// `target` and fsyncs the directory. If `write` throws or any step fails, the temporary is
// removed, `target` is left as it was, and the error propagates (a std::runtime_error naming
// the path for I/O failures).
void write_file_atomically(const std::filesystem::path& target,
                           const std::function<void(std::ostream&)>& write);

}  // namespace microdit::io
