// File checksums as MosaicML Streaming lists them in an index.json: SHA-1 and MD5 (computed by
// libmd), XXH32 and XXH64 (by the xxHash library), each as the lowercase hex digest Python's
// hashlib / xxhash `hexdigest()` prints (xxHash in canonical big-endian form).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace microdit::io {

std::array<uint8_t, 20> sha1(std::string_view data);
std::array<uint8_t, 16> md5(std::string_view data);
uint32_t xxh32(std::string_view data, uint32_t seed = 0);
uint64_t xxh64(std::string_view data, uint64_t seed = 0);

// True for the algorithm names implemented here: "md5", "sha1", "xxh32", "xxh64".
bool is_implemented_hash(std::string_view algorithm);

// The hex digest of `data` under `algorithm`, or std::nullopt when it is not implemented here
// (streaming accepts every hashlib and xxhash algorithm; the others are not checked).
std::optional<std::string> hex_digest(std::string_view algorithm, std::string_view data);

}  // namespace microdit::io
