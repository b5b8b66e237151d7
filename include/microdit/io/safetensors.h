// safetensors files: [u64 LE header length N][N bytes JSON header][tensor bytes].
// The reader applies the checks of the reference Rust reader (huggingface/safetensors
// `read_metadata`/`validate`) and additionally rejects duplicate keys; the writer produces the
// same bytes as the reference writer (`prepare`/`serialize`) for the same tensors and metadata.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "microdit/io/tensor_map.h"

namespace microdit::io {

// Loads every tensor to CPU. `metadata`, if given, receives the `__metadata__` entries.
// Errors are std::runtime_error whose message starts with the file path.
TensorMap load_safetensors(const std::filesystem::path& path,
                           std::map<std::string, std::string>* metadata = nullptr);
// The same for a file already in memory; errors start with `name_for_errors`.
TensorMap parse_safetensors(std::string_view bytes, const std::string& name_for_errors,
                            std::map<std::string, std::string>* metadata = nullptr);

// Writes atomically (see atomic_file.h). Tensors may be on any device and non-contiguous;
// they are written as contiguous little-endian CPU data. Empty `metadata` writes no
// `__metadata__` entry, as the reference writer does for `metadata=None`.
void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype code of a scalar type ("F32", "BF16", ...), if it has one.
std::optional<std::string_view> safetensors_dtype_name(at::ScalarType type);

}  // namespace microdit::io
