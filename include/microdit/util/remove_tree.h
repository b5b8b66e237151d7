// Removing a directory tree without std::filesystem::remove_all: the CUDA build of libtorch.so
// (PyTorch 2.11) exports a broken copy of it that programs linked against it bind to and crash
// in (seen on the GPU machine, 2026-11-26).
#pragma once
#include <filesystem>

namespace microdit::util {

// Removes a file or a directory with everything below it; no error when it does not exist.
// Symbolic links are removed, never followed.
void remove_tree(const std::filesystem::path& path);

}  // namespace microdit::util
