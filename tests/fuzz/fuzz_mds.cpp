// MDS datasets (data/mds.cpp): index.json, then a shard (plain or zstd) and the samples in it.
// The input is index.json, a NUL byte, and the shard's bytes, which are written as
// shard.00000.mds (or .mds.zstd) in a folder of this process: the reader takes a folder and maps
// its shards.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fuzz_support.h"
#include "microdit/data/mds.h"

namespace {
const std::filesystem::path& folder() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("microdit-fuzz-mds-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

void write(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = microdit::fuzz::bytes_of(data, size);
  const std::size_t nul = input.find('\0');
  if (nul == std::string_view::npos) return 0;
  write(folder() / "index.json", input.substr(0, nul));
  // Under the name of its kind (zstd frames start with 28 B5 2F FD): the reader takes an
  // uncompressed shard where both exist.
  const std::string_view shard = input.substr(nul + 1);
  const bool zstd = shard.starts_with("\x28\xb5\x2f\xfd");
  std::filesystem::remove(folder() / (zstd ? "shard.00000.mds" : "shard.00000.mds.zstd"));
  write(folder() / (zstd ? "shard.00000.mds.zstd" : "shard.00000.mds"), shard);
  microdit::fuzz::expect_clean_error(folder().string(), [&] {
    const microdit::data::MDSReader reader(folder());
    for (int64_t i = 0; i < std::min<int64_t>(reader.size(), 64); ++i) {
      std::vector<std::string> readable;  // image and pickle columns are refused by name
      for (const auto& column : reader.column_info()) {
        if (column.encoding.find("pil") == std::string::npos &&
            column.encoding.find("jpeg") == std::string::npos &&
            column.encoding.find("png") == std::string::npos && column.encoding != "pkl") {
          readable.push_back(column.name);
        }
      }
      reader.get(i, readable);
    }
  });
  return 0;
}
