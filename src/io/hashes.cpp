#include "microdit/io/hashes.h"

#include <md5.h>
#include <sha1.h>

// xxHash used header-only: its functions are compiled into this file, so no program needs
// libxxhash at link or run time.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace microdit::io {

namespace {

std::string to_hex(const unsigned char* bytes, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < size; ++i) {
    const unsigned char byte = bytes[i];
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 15]);
  }
  return out;
}

const uint8_t* bytes_of(std::string_view data) {
  return reinterpret_cast<const uint8_t*>(data.data());
}

}  // namespace

std::array<uint8_t, 20> sha1(std::string_view data) {
  SHA1_CTX context;
  SHA1Init(&context);
  SHA1Update(&context, bytes_of(data), data.size());
  std::array<uint8_t, 20> digest{};
  SHA1Final(digest.data(), &context);
  return digest;
}

std::array<uint8_t, 16> md5(std::string_view data) {
  MD5_CTX context;
  MD5Init(&context);
  MD5Update(&context, bytes_of(data), data.size());
  std::array<uint8_t, 16> digest{};
  MD5Final(digest.data(), &context);
  return digest;
}

uint32_t xxh32(std::string_view data, uint32_t seed) {
  return XXH32(data.data(), data.size(), seed);
}

uint64_t xxh64(std::string_view data, uint64_t seed) {
  return XXH64(data.data(), data.size(), seed);
}

bool is_implemented_hash(std::string_view algorithm) {
  return algorithm == "md5" || algorithm == "sha1" || algorithm == "xxh32" || algorithm == "xxh64";
}

std::optional<std::string> hex_digest(std::string_view algorithm, std::string_view data) {
  if (algorithm == "sha1") return to_hex(sha1(data).data(), 20);
  if (algorithm == "md5") return to_hex(md5(data).data(), 16);
  // Python's xxhash hexdigest() prints the canonical (big-endian) form of the hash.
  if (algorithm == "xxh32") {
    XXH32_canonical_t canonical;
    XXH32_canonicalFromHash(&canonical, xxh32(data));
    return to_hex(canonical.digest, sizeof(canonical.digest));
  }
  if (algorithm == "xxh64") {
    XXH64_canonical_t canonical;
    XXH64_canonicalFromHash(&canonical, xxh64(data));
    return to_hex(canonical.digest, sizeof(canonical.digest));
  }
  return std::nullopt;
}

}  // namespace microdit::io
