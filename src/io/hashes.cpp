#include "microdit/io/hashes.h"

#include <bit>
#include <cstring>

namespace microdit::io {

namespace {

static_assert(std::endian::native == std::endian::little, "hashes assume a little-endian host");

uint32_t load_le32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint64_t load_le64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

const unsigned char* bytes_of(std::string_view data) {
  return reinterpret_cast<const unsigned char*>(data.data());
}

// The Merkle-Damgard padding shared by MD5 and SHA-1: 0x80, zeros, then the bit length as a
// 64-bit integer (little-endian for MD5, big-endian for SHA-1), to a multiple of 64 bytes.
std::string padded_tail(std::string_view data, bool big_endian_length) {
  const std::size_t full = data.size() / 64 * 64;
  std::string tail(data.substr(full));
  tail.push_back(static_cast<char>(0x80));
  while (tail.size() % 64 != 56) tail.push_back('\0');
  const uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i) {
    const int shift = big_endian_length ? 56 - 8 * i : 8 * i;
    tail.push_back(static_cast<char>((bits >> shift) & 0xff));
  }
  return tail;
}

template <class Block>
void for_each_block(std::string_view data, bool big_endian_length, Block&& block) {
  const std::size_t full = data.size() / 64 * 64;
  for (std::size_t i = 0; i < full; i += 64) block(bytes_of(data) + i);
  const std::string tail = padded_tail(data, big_endian_length);
  for (std::size_t i = 0; i < tail.size(); i += 64) block(bytes_of(tail) + i);
}

template <std::size_t N>
std::string to_hex(const std::array<uint8_t, N>& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : digest) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 15]);
  }
  return out;
}

template <class T>
std::string to_hex_big_endian(T value) {
  std::array<uint8_t, sizeof(T)> bytes{};
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    bytes[i] = static_cast<uint8_t>(value >> (8 * (sizeof(T) - 1 - i)));
  }
  return to_hex(bytes);
}

constexpr uint32_t kP32_1 = 0x9E3779B1U, kP32_2 = 0x85EBCA77U, kP32_3 = 0xC2B2AE3DU,
                   kP32_4 = 0x27D4EB2FU, kP32_5 = 0x165667B1U;
constexpr uint64_t kP64_1 = 0x9E3779B185EBCA87ULL, kP64_2 = 0xC2B2AE3D27D4EB4FULL,
                   kP64_3 = 0x165667B19E3779F9ULL, kP64_4 = 0x85EBCA77C2B2AE63ULL,
                   kP64_5 = 0x27D4EB2F165667C5ULL;

uint32_t xxh32_round(uint32_t acc, uint32_t lane) {
  return std::rotl(acc + lane * kP32_2, 13) * kP32_1;
}

uint64_t xxh64_round(uint64_t acc, uint64_t lane) {
  return std::rotl(acc + lane * kP64_2, 31) * kP64_1;
}

uint64_t xxh64_merge(uint64_t acc, uint64_t v) {
  return (acc ^ xxh64_round(0, v)) * kP64_1 + kP64_4;
}

}  // namespace

std::array<uint8_t, 20> sha1(std::string_view data) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  for_each_block(data, /*big_endian_length=*/true, [&](const unsigned char* block) {
    uint32_t w[80];
    for (int t = 0; t < 16; ++t) w[t] = load_be32(block + 4 * t);
    for (int t = 16; t < 80; ++t) w[t] = std::rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; ++t) {
      uint32_t f, k;
      if (t < 20) {
        f = (b & c) | (~b & d), k = 0x5A827999;
      } else if (t < 40) {
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      } else if (t < 60) {
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d, k = 0xCA62C1D6;
      }
      const uint32_t temp = std::rotl(a, 5) + f + e + k + w[t];
      e = d, d = c, c = std::rotl(b, 30), b = a, a = temp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  });
  std::array<uint8_t, 20> digest{};
  for (int i = 0; i < 20; ++i) digest[i] = static_cast<uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
  return digest;
}

std::array<uint8_t, 16> md5(std::string_view data) {
  // RFC 1321 section 3.4: per-round shift amounts and K[i] = floor(2^32 * |sin(i + 1)|).
  static constexpr uint32_t kShift[64] = {
      7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
      14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
      4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21};
  static constexpr uint32_t kSine[64] = {
      0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
      0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
      0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
      0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
      0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
      0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
      0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
      0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
      0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
      0xeb86d391};
  uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  for_each_block(data, /*big_endian_length=*/false, [&](const unsigned char* block) {
    uint32_t m[16];
    for (int j = 0; j < 16; ++j) m[j] = load_le32(block + 4 * j);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      if (i < 16) {
        f = (b & c) | (~b & d), g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d, g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d), g = (7 * i) % 16;
      }
      const uint32_t rotated = std::rotl(a + f + kSine[i] + m[g], static_cast<int>(kShift[i]));
      a = d, d = c, c = b, b = b + rotated;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d;
  });
  std::array<uint8_t, 16> digest{};
  for (int i = 0; i < 16; ++i) digest[i] = static_cast<uint8_t>(h[i / 4] >> (8 * (i % 4)));
  return digest;
}

uint32_t xxh32(std::string_view data, uint32_t seed) {
  const unsigned char* p = bytes_of(data);
  const unsigned char* const end = p + data.size();
  uint32_t acc;
  if (data.size() >= 16) {
    uint32_t v[4] = {seed + kP32_1 + kP32_2, seed + kP32_2, seed, seed - kP32_1};
    for (; end - p >= 16; p += 16) {
      for (int i = 0; i < 4; ++i) v[i] = xxh32_round(v[i], load_le32(p + 4 * i));
    }
    acc = std::rotl(v[0], 1) + std::rotl(v[1], 7) + std::rotl(v[2], 12) + std::rotl(v[3], 18);
  } else {
    acc = seed + kP32_5;
  }
  acc += static_cast<uint32_t>(data.size());
  for (; end - p >= 4; p += 4) acc = std::rotl(acc + load_le32(p) * kP32_3, 17) * kP32_4;
  for (; p < end; ++p) acc = std::rotl(acc + *p * kP32_5, 11) * kP32_1;
  acc ^= acc >> 15;
  acc *= kP32_2;
  acc ^= acc >> 13;
  acc *= kP32_3;
  acc ^= acc >> 16;
  return acc;
}

uint64_t xxh64(std::string_view data, uint64_t seed) {
  const unsigned char* p = bytes_of(data);
  const unsigned char* const end = p + data.size();
  uint64_t acc;
  if (data.size() >= 32) {
    uint64_t v[4] = {seed + kP64_1 + kP64_2, seed + kP64_2, seed, seed - kP64_1};
    for (; end - p >= 32; p += 32) {
      for (int i = 0; i < 4; ++i) v[i] = xxh64_round(v[i], load_le64(p + 8 * i));
    }
    acc = std::rotl(v[0], 1) + std::rotl(v[1], 7) + std::rotl(v[2], 12) + std::rotl(v[3], 18);
    for (uint64_t lane : v) acc = xxh64_merge(acc, lane);
  } else {
    acc = seed + kP64_5;
  }
  acc += static_cast<uint64_t>(data.size());
  for (; end - p >= 8; p += 8)
    acc = std::rotl(acc ^ xxh64_round(0, load_le64(p)), 27) * kP64_1 + kP64_4;
  if (end - p >= 4) {
    acc = std::rotl(acc ^ (uint64_t{load_le32(p)} * kP64_1), 23) * kP64_2 + kP64_3;
    p += 4;
  }
  for (; p < end; ++p) acc = std::rotl(acc ^ (*p * kP64_5), 11) * kP64_1;
  acc ^= acc >> 33;
  acc *= kP64_2;
  acc ^= acc >> 29;
  acc *= kP64_3;
  acc ^= acc >> 32;
  return acc;
}

bool is_implemented_hash(std::string_view algorithm) {
  return algorithm == "md5" || algorithm == "sha1" || algorithm == "xxh32" || algorithm == "xxh64";
}

std::optional<std::string> hex_digest(std::string_view algorithm, std::string_view data) {
  if (algorithm == "sha1") return to_hex(sha1(data));
  if (algorithm == "md5") return to_hex(md5(data));
  if (algorithm == "xxh32") return to_hex_big_endian(xxh32(data));
  if (algorithm == "xxh64") return to_hex_big_endian(xxh64(data));
  return std::nullopt;
}

}  // namespace microdit::io
