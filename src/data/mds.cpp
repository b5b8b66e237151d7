// MDS reader and writer. Byte layouts follow streaming 0.x (streaming/base/format/mds): shard
// header and sample layout in writer.py, encodings in encodings.py, index.json in
// format/base/writer.py, the merged index in base/util.py.
// Our own code because MosaicML's MDS format exists only in Python's streaming package; we write
// its bytes exactly, index.json included (Python json.dumps spacing and escapes, below).
#include "microdit/data/mds.h"

#include <c10/util/StringUtil.h>
#include <c10/util/safe_numerics.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <list>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#ifdef MICRODIT_HAVE_ZSTD
#include <zstd.h>
#endif

#include <nlohmann/json.hpp>

#include "microdit/data/dataset.h"
#include "microdit/io/atomic_file.h"
#include "microdit/io/hashes.h"
#include "microdit/io/json.h"
#include "microdit/io/read_file.h"
#include "microdit/io/tensor_map.h"
#include "microdit/util/error_message.h"

namespace microdit::data {

namespace fs = std::filesystem;
using io::Json;

namespace {

static_assert(std::endian::native == std::endian::little, "MDS stores little-endian integers");

constexpr int64_t kVersion = 2;
constexpr int64_t kMaxSizeLimit = int64_t{1} << 32;  // sample offsets are uint32

// ------------------------------------------------------------------------------- encodings

struct NumpyDtype {
  const char* name;
  uint8_t code;  // the ndarray encoding's dtype byte
  at::ScalarType type;
};

constexpr NumpyDtype kDtypes[] = {
    {"uint8", 8, at::kByte},   {"int8", 9, at::kChar},      {"uint16", 16, at::kUInt16},
    {"int16", 17, at::kShort}, {"float16", 18, at::kHalf},  {"uint32", 32, at::kUInt32},
    {"int32", 33, at::kInt},   {"float32", 34, at::kFloat}, {"uint64", 64, at::kUInt64},
    {"int64", 65, at::kLong},  {"float64", 66, at::kDouble}};

const NumpyDtype* dtype_by_name(std::string_view name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const NumpyDtype* dtype_by_code(uint8_t code) {
  for (const auto& d : kDtypes) {
    if (code == d.code) return &d;
  }
  return nullptr;
}

const NumpyDtype* dtype_by_type(at::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

enum class Kind { raw, int64, str_int, str_float, scalar, ndarray, unsupported };

// A parsed column encoding ("bytes", "uint16", "ndarray:float16:4,32,32", ...).
struct Encoding {
  Kind kind = Kind::raw;
  const NumpyDtype* dtype = nullptr;          // scalar; ndarray when static
  std::optional<std::vector<int64_t>> shape;  // ndarray when static
  std::optional<int64_t> size;                // fixed bytes per sample
  std::string unsupported;                    // why a known encoding cannot be decoded here
};

Encoding make_encoding(Kind kind, const NumpyDtype* dtype = nullptr,
                       std::optional<int64_t> size = std::nullopt) {
  Encoding e;
  e.kind = kind;
  e.dtype = dtype;
  e.size = size;
  return e;
}

Encoding unsupported_encoding(std::string why) {
  Encoding e;
  e.kind = Kind::unsupported;
  e.unsupported = std::move(why);
  return e;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// Bytes of an array of `shape`; nullopt when that overflows int64 (a damaged size or shape).
std::optional<int64_t> checked_byte_size(const std::vector<int64_t>& shape, const NumpyDtype& d) {
  uint64_t numel = 0, bytes = 0;
  if (c10::safe_multiplies_u64(shape, &numel) ||
      __builtin_mul_overflow(numel, c10::elementSize(d.type), &bytes) ||
      bytes > static_cast<uint64_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(bytes);
}

// The ndarray encoding's "[dtype[:d0,d1,...]]" part, as NDArray.from_str; nullopt when malformed.
std::optional<Encoding> parse_ndarray(std::string_view config) {
  Encoding e = make_encoding(Kind::ndarray);
  if (config.empty()) return e;
  const auto args = split(config, ':');
  if (args.size() > 2) return std::nullopt;
  e.dtype = dtype_by_name(args[0]);
  if (e.dtype == nullptr) return std::nullopt;
  if (args.size() == 2) {
    std::vector<int64_t> shape;
    for (auto dim_text : split(args[1], ',')) {
      int64_t dim = 0;
      const auto [end, ec] =
          std::from_chars(dim_text.data(), dim_text.data() + dim_text.size(), dim);
      if (ec != std::errc{} || end != dim_text.data() + dim_text.size() || dim < 1) {
        return std::nullopt;
      }
      shape.push_back(dim);
    }
    e.size = checked_byte_size(shape, *e.dtype);
    if (!e.size) return std::nullopt;
    e.shape = std::move(shape);
  }
  return e;
}

// nullopt for a name streaming does not know (or a malformed ndarray configuration).
std::optional<Encoding> parse_encoding(std::string_view text) {
  if (text.starts_with("ndarray:")) return parse_ndarray(text.substr(8));
  if (text == "ndarray") return make_encoding(Kind::ndarray);
  if (text == "bytes" || text == "str" || text == "json" || text == "str_decimal") {
    return make_encoding(Kind::raw);
  }
  if (text == "int") return make_encoding(Kind::int64, nullptr, 8);
  if (text == "str_int") return make_encoding(Kind::str_int);
  if (text == "str_float") return make_encoding(Kind::str_float);
  if (const auto* d = dtype_by_name(text)) {
    return make_encoding(Kind::scalar, d, static_cast<int64_t>(c10::elementSize(d->type)));
  }
  for (const char* image :
       {"jpeg", "png", "pil", "jpeg_array", "jpegarray", "list[pil]", "list[jpeg]", "list[png]"}) {
    if (text == image) {
      return unsupported_encoding(c10::str("image encodings are not supported (yet): ", text));
    }
  }
  if (text == "pkl") {
    return unsupported_encoding(
        "pkl (pickle) columns are not supported: unpickling runs arbitrary code");
  }
  return std::nullopt;
}

std::string size_text(const std::optional<int64_t>& size) {
  return size ? std::to_string(*size) : std::string("null");
}

// ------------------------------------------------------------------- Python's json.dumps

// Python's json.dumps string literal with ensure_ascii=True: \" \\ \n \r \t \b \f, other
// control and non-ASCII characters as \uXXXX (UTF-16 surrogate pairs above U+FFFF).
void append_python_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto escape_unit = [&](uint32_t unit) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out.push_back(kHex[(unit >> shift) & 15]);
  };
  out.push_back('"');
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      static constexpr std::string_view kEscaped = "\"\\\n\r\t\b\f", kLetters = "\"\\nrtbf";
      if (const auto k = kEscaped.find(static_cast<char>(c)); k != std::string_view::npos) {
        out.push_back('\\');
        out.push_back(kLetters[k]);
      } else if (c < 0x20 || c == 0x7f) {
        escape_unit(c);
      } else {
        out.push_back(static_cast<char>(c));
      }
      continue;
    }
    // A UTF-8 sequence (the text came from parse_json or a caller: assumed valid).
    const int length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    uint32_t code = c & (0x3f >> (length - 1));
    for (int k = 1; k < length && i + k < text.size(); ++k) {
      code = (code << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3f);
    }
    i += length;
    if (code >= 0x10000) {
      code -= 0x10000;
      escape_unit(0xd800 + (code >> 10));
      escape_unit(0xdc00 + (code & 0x3ff));
    } else {
      escape_unit(code);
    }
  }
  out.push_back('"');
}

// json.dumps(value, sort_keys=sort_keys) with the default separators ", " and ": ".
void append_python_json(std::string& out, const Json& value, bool sort_keys) {
  switch (value.type()) {
    case Json::value_t::null:
      out += "null";
      return;
    case Json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return;
    case Json::value_t::number_integer:
      out += std::to_string(value.get<std::int64_t>());
      return;
    case Json::value_t::number_unsigned:
      out += std::to_string(value.get<std::uint64_t>());
      return;
    case Json::value_t::number_float:
      out += python_float_repr(value.get<double>());
      return;
    case Json::value_t::string:
      append_python_string(out, value.get_ref<const std::string&>());
      return;
    case Json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& item : value) {
        if (!first) out += ", ";
        first = false;
        append_python_json(out, item, sort_keys);
      }
      out.push_back(']');
      return;
    }
    case Json::value_t::object: {
      std::vector<const io::JsonObject::value_type*> members;
      for (const auto& member : value.get_ref<const io::JsonObject&>()) members.push_back(&member);
      // UTF-8 byte order is code point order, which is how Python sorts str keys.
      if (sort_keys) {
        std::sort(members.begin(), members.end(),
                  [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out.push_back('{');
      bool first = true;
      for (const auto* member : members) {
        if (!first) out += ", ";
        first = false;
        append_python_string(out, member->first);
        out += ": ";
        append_python_json(out, member->second, sort_keys);
      }
      out.push_back('}');
      return;
    }
    case Json::value_t::binary:  // only from binary formats such as CBOR, never from JSON text
    case Json::value_t::discarded:
      break;
  }
  throw std::logic_error(c10::str("MDS: no Python JSON for a ", value.type_name(), " value"));
}

std::string python_json(const Json& value, bool sort_keys) {
  std::string out;
  append_python_json(out, value, sort_keys);
  return out;
}

void write_bytes(const fs::path& path, std::string_view data) {
  io::write_file_atomically(path, [&](std::ostream& out) {
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  });
}

// A shard basename from index.json: a relative path that stays inside the dataset directory.
bool is_safe_relative(const std::string& name) {
  const fs::path path(name);
  if (name.empty() || path.is_absolute()) return false;
  for (const auto& part : path) {
    if (part == "..") return false;
  }
  return true;
}

// --------------------------------------------------------------------------------- zstd

// Parses "zstd" / "zstd:<1..22>" into the zstd level; `where` prefixes errors. The other families
// streaming writes (br, bz2, gz, snappy) are rejected.
template <class Error>
int parse_compression(const std::string& text, const std::string& where) {
  const auto colon = text.find(':');
  const std::string family = text.substr(0, colon);
  if (family != "zstd") {
    for (const char* known : {"br", "bz2", "gz", "snappy"}) {
      if (family == known) {
        throw Error(c10::str(where, "compression \"", text, "\" is not supported (only zstd)"));
      }
    }
    throw Error(c10::str(where, "unknown compression \"", text, "\""));
  }
  int level = 3;  // streaming's default
  if (colon != std::string::npos) {
    const std::string digits = text.substr(colon + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), level);
    if (ec != std::errc{} || end != digits.data() + digits.size() || level < 1 || level > 22) {
      throw Error(c10::str(where, "compression \"", text, "\": zstd levels are 1..22"));
    }
  }
#ifndef MICRODIT_HAVE_ZSTD
  throw std::runtime_error(c10::str(where, "zstd shards need libzstd (this build has none)"));
#endif
  return level;
}

// Decompresses `data` (one or more zstd frames) into exactly `expected` bytes. The output grows
// with what the frames hold: `expected` comes from index.json, and a damaged one may say anything.
std::string zstd_decompress(std::string_view data, int64_t expected, const std::string& where) {
#ifdef MICRODIT_HAVE_ZSTD
  std::string out;
  std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(),
                                                                    &ZSTD_freeDStream);
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  std::vector<char> chunk(ZSTD_DStreamOutSize());
  std::size_t rc = 0;
  for (;;) {
    const std::size_t in_before = in.pos;
    ZSTD_outBuffer dst{chunk.data(), chunk.size(), 0};
    rc = ZSTD_decompressStream(stream.get(), &dst, &in);
    if (ZSTD_isError(rc)) {
      throw std::runtime_error(
          c10::str(where, "zstd decompression failed: ", ZSTD_getErrorName(rc)));
    }
    if (static_cast<uint64_t>(out.size() + dst.pos) > static_cast<uint64_t>(expected)) {
      throw std::runtime_error(
          c10::str(where, "decompresses to more than the ", expected, " bytes index.json says"));
    }
    out.append(chunk.data(), dst.pos);
    if (in.pos == in.size && rc == 0) break;            // every frame complete
    if (in.pos == in_before && dst.pos == 0) break;     // no progress: cut short
  }
  if (rc != 0) throw std::runtime_error(c10::str(where, "truncated zstd data"));
  if (static_cast<int64_t>(out.size()) != expected) {
    throw std::runtime_error(
        c10::str(where, "decompresses to ", out.size(), " bytes, index.json says ", expected));
  }
  return out;
#else
  (void)data, (void)expected;
  throw std::runtime_error(c10::str(where, "zstd shards need libzstd (this build has none)"));
#endif
}

std::string zstd_compress(std::string_view data, int level) {
#ifdef MICRODIT_HAVE_ZSTD
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) {
    throw std::runtime_error(c10::str("zstd compression failed: ", ZSTD_getErrorName(n)));
  }
  out.resize(n);
  return out;
#else
  (void)data, (void)level;
  throw std::runtime_error("zstd shards need libzstd (this build has none)");
#endif
}

// --------------------------------------------------------------------- value decoding

uint32_t load_u32(std::string_view data, std::size_t pos) {
  uint32_t v;
  std::memcpy(&v, data.data() + pos, 4);
  return v;
}

at::Tensor tensor_from_bytes(std::string_view data, const NumpyDtype& dtype,
                             std::vector<int64_t> shape) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype.type));
  if (!data.empty()) std::memcpy(t.data_ptr(), data.data(), data.size());
  return t;
}

at::Tensor decode_ndarray(std::string_view data, const Encoding& e) {
  std::size_t pos = 0;
  auto need = [&](std::size_t n, const char* what) {
    if (data.size() - pos < n) {
      throw std::runtime_error(
          c10::str("ndarray of ", data.size(), " bytes ends inside its ", what));
    }
  };
  const NumpyDtype* dtype = e.dtype;
  if (dtype == nullptr) {
    need(1, "dtype byte");
    dtype = dtype_by_code(static_cast<uint8_t>(data[pos++]));
    if (dtype == nullptr) {
      throw std::runtime_error(c10::str("ndarray has unknown dtype code ",
                                        static_cast<int>(static_cast<uint8_t>(data[pos - 1]))));
    }
  }
  std::vector<int64_t> shape;
  if (e.shape) {
    shape = *e.shape;
  } else {
    need(1, "shape byte");
    const auto byte = static_cast<uint8_t>(data[pos++]);
    const int ndim = byte >> 2;
    const std::size_t width = std::size_t{1} << (byte & 3);  // uint8/16/32/64
    need(ndim * width, "shape");
    for (int d = 0; d < ndim; ++d, pos += width) {
      uint64_t dim = 0;
      std::memcpy(&dim, data.data() + pos, width);
      if (dim > static_cast<uint64_t>(INT64_MAX)) {
        throw std::runtime_error("ndarray shape overflows");
      }
      shape.push_back(static_cast<int64_t>(dim));
    }
  }
  const auto values = data.substr(pos);
  const std::optional<int64_t> size = checked_byte_size(shape, *dtype);
  if (!size) {
    throw std::runtime_error(c10::str("ndarray ", dtype->name, " ", io::shape_string(shape),
                                      " has more bytes than int64 counts"));
  }
  if (static_cast<int64_t>(values.size()) != *size) {
    throw std::runtime_error(c10::str("ndarray ", dtype->name, " ", io::shape_string(shape),
                                      " needs ", *size, " bytes of values, found ",
                                      values.size()));
  }
  return tensor_from_bytes(values, *dtype, shape);
}

MDSValue decode_value(std::string_view data, const Encoding& e) {
  switch (e.kind) {
    case Kind::raw:
      return std::string(data);
    case Kind::int64: {
      int64_t v;
      std::memcpy(&v, data.data(), 8);
      return v;
    }
    case Kind::str_int: {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(data.data(), data.data() + data.size(), v);
      if (ec != std::errc{} || end != data.data() + data.size()) {
        throw std::runtime_error(c10::str("\"", data, "\" is not an integer in int64 range"));
      }
      return v;
    }
    case Kind::str_float: {
      double v = 0;
      const auto [end, ec] = std::from_chars(data.data(), data.data() + data.size(), v);
      if (ec == std::errc::result_out_of_range) {
        v = std::strtod(std::string(data).c_str(), nullptr);
      } else if (ec != std::errc{} || end != data.data() + data.size()) {
        throw std::runtime_error(c10::str("\"", data, "\" is not a float"));
      }
      return v;
    }
    case Kind::scalar:
      return tensor_from_bytes(data, *e.dtype, {});
    case Kind::ndarray:
      return decode_ndarray(data, e);
    case Kind::unsupported:
      throw std::runtime_error(e.unsupported);
  }
  throw std::logic_error("unreachable");
}

// --------------------------------------------------------------------- value encoding

template <class T>
std::string scalar_bytes(T value) {
  std::string out(sizeof(T), '\0');
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

std::string tensor_bytes(const at::Tensor& t) {
  const at::Tensor c = t.cpu().contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

std::string encode_float_scalar(double v, at::ScalarType type) {
  switch (type) {
    case at::kHalf:
      return scalar_bytes(c10::Half(static_cast<float>(v)));
    case at::kFloat:
      return scalar_bytes(static_cast<float>(v));
    case at::kDouble:
      return scalar_bytes(v);
    default:
      throw std::invalid_argument("a double needs a float16/32/64 column");
  }
}

template <class T>
std::string checked_integer(int64_t v) {
  if (std::cmp_less(v, std::numeric_limits<T>::min()) ||
      std::cmp_greater(v, std::numeric_limits<T>::max())) {
    throw std::invalid_argument(c10::str(v, " is out of range"));
  }
  return scalar_bytes(static_cast<T>(v));
}

// numpy's np.<dtype>(v).tobytes(), except that out-of-range integers are an error.
std::string encode_int_scalar(int64_t v, at::ScalarType type) {
  switch (type) {
    case at::kByte:
      return checked_integer<uint8_t>(v);
    case at::kChar:
      return checked_integer<int8_t>(v);
    case at::kUInt16:
      return checked_integer<uint16_t>(v);
    case at::kShort:
      return checked_integer<int16_t>(v);
    case at::kUInt32:
      return checked_integer<uint32_t>(v);
    case at::kInt:
      return checked_integer<int32_t>(v);
    case at::kUInt64:
      return checked_integer<uint64_t>(v);
    case at::kLong:
      return scalar_bytes(v);
    default:
      return encode_float_scalar(static_cast<double>(v), type);
  }
}

std::string encode_ndarray(const at::Tensor& t, const Encoding& e) {
  const NumpyDtype* dtype = dtype_by_type(t.scalar_type());
  if (dtype == nullptr) {
    throw std::invalid_argument(c10::str("dtype ", t.scalar_type(), " has no ndarray code"));
  }
  std::string out;
  if (e.dtype == nullptr) {
    out.push_back(static_cast<char>(dtype->code));
  } else if (e.dtype != dtype) {
    throw std::invalid_argument(
        c10::str("wrong dtype: expected ", e.dtype->name, ", got ", dtype->name));
  }
  if (t.numel() == 0) throw std::invalid_argument("an ndarray must have elements");
  if (e.shape) {
    if (t.sizes().vec() != *e.shape) {
      throw std::invalid_argument(c10::str("wrong shape: expected ", io::shape_string(*e.shape),
                                           ", got ", io::shape_string(t.sizes())));
    }
  } else {
    if (t.dim() == 0) throw std::invalid_argument("a 0-d tensor needs a scalar encoding");
    if (t.dim() >= 64) throw std::invalid_argument("an ndarray has at most 63 dimensions");
    const int64_t largest = *std::max_element(t.sizes().begin(), t.sizes().end());
    int code = 0;  // the smallest of uint8/16/32/64 that holds every dimension
    while (code < 3 && largest >= (int64_t{1} << (8 << code))) ++code;
    out.push_back(static_cast<char>((t.dim() << 2) | code));
    for (const int64_t dim : t.sizes()) {
      const auto d = static_cast<uint64_t>(dim);
      out.append(reinterpret_cast<const char*>(&d), std::size_t{1} << code);  // little-endian
    }
  }
  return out + tensor_bytes(t);
}

std::string encode_value(const MDSValue& value, const Encoding& e) {
  // As streaming's mds_encode: bytes are stored unchanged whatever the encoding.
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  switch (e.kind) {
    case Kind::raw:
      throw std::invalid_argument("needs a std::string");
    case Kind::int64:
      if (const auto* v = std::get_if<int64_t>(&value)) return scalar_bytes(*v);
      throw std::invalid_argument("needs an int64_t");
    case Kind::str_int:
      if (const auto* v = std::get_if<int64_t>(&value)) return std::to_string(*v);
      throw std::invalid_argument("needs an int64_t");
    case Kind::str_float:
      if (const auto* v = std::get_if<double>(&value)) return python_float_repr(*v);
      throw std::invalid_argument("needs a double");
    case Kind::scalar:
      if (const auto* v = std::get_if<int64_t>(&value)) return encode_int_scalar(*v, e.dtype->type);
      if (const auto* v = std::get_if<double>(&value)) {
        return encode_float_scalar(*v, e.dtype->type);
      }
      if (const auto* t = std::get_if<at::Tensor>(&value)) {
        if (t->scalar_type() != e.dtype->type || t->numel() != 1) {
          throw std::invalid_argument(c10::str("needs a one-element ", e.dtype->name,
                                               " tensor, got ", t->scalar_type(), " ",
                                               io::shape_string(t->sizes())));
        }
        return tensor_bytes(*t);
      }
      throw std::invalid_argument("needs an int64_t, a double or a tensor");
    case Kind::ndarray:
      if (const auto* t = std::get_if<at::Tensor>(&value)) return encode_ndarray(*t, e);
      throw std::invalid_argument("needs a tensor");
    case Kind::unsupported:
      throw std::invalid_argument(e.unsupported);
  }
  throw std::logic_error("unreachable");
}

const char* value_kind(const MDSValue& value) {
  static constexpr const char* kNames[] = {"std::string", "int64_t", "double", "at::Tensor"};
  return kNames[value.index()];
}

// ------------------------------------------------------------------------- index.json

const Json& member(const Json& object, const char* key, const std::string& where) {
  const Json* value = io::json_find(object, key);
  if (value == nullptr) throw std::runtime_error(c10::str(where, "missing key \"", key, "\""));
  return *value;
}

int64_t integer_member(const Json& object, const char* key, const std::string& where) {
  const Json& value = member(object, key, where);
  const auto n = io::json_int64(value);
  if (!n || *n < 0) {
    throw std::runtime_error(c10::str(where, "\"", key, "\" must be a non-negative integer"));
  }
  return *n;
}

const std::string& string_member(const Json& object, const char* key, const std::string& where) {
  const Json& value = member(object, key, where);
  if (!value.is_string()) {
    throw std::runtime_error(c10::str(where, "\"", key, "\" must be a string"));
  }
  return value.get_ref<const std::string&>();
}

const io::JsonArray& array_member(const Json& object, const char* key, const std::string& where) {
  const Json& value = member(object, key, where);
  if (!value.is_array()) throw std::runtime_error(c10::str(where, "\"", key, "\" must be a list"));
  return value.get_ref<const io::JsonArray&>();
}

// index.json's column_names, column_encodings and column_sizes of one shard, checked.
std::vector<MDSColumn> parse_columns(const Json& shard, const std::string& where) {
  const auto& names = array_member(shard, "column_names", where);
  const auto& encodings = array_member(shard, "column_encodings", where);
  const auto& sizes = array_member(shard, "column_sizes", where);
  if (names.size() != encodings.size() || names.size() != sizes.size()) {
    throw std::runtime_error(c10::str(where, names.size(), " column_names, ", encodings.size(),
                                      " column_encodings and ", sizes.size(), " column_sizes"));
  }
  std::vector<MDSColumn> columns;
  for (std::size_t c = 0; c < names.size(); ++c) {
    if (!names[c].is_string() || !encodings[c].is_string() ||
        !(sizes[c].is_null() || io::json_int64(sizes[c]))) {
      throw std::runtime_error(c10::str(
          where, "column ", c, ": names and encodings must be strings, sizes integers or null"));
    }
    MDSColumn column{names[c].get<std::string>(), encodings[c].get<std::string>(),
                     io::json_int64(sizes[c])};
    const auto encoding = parse_encoding(column.encoding);
    if (!encoding) {
      throw std::runtime_error(c10::str(where, "column \"", column.name,
                                        "\" has unknown encoding \"", column.encoding, "\""));
    }
    if (encoding->size != column.size) {
      throw std::runtime_error(c10::str(where, "column \"", column.name, "\" (", column.encoding,
                                        ") has column_size ", size_text(column.size),
                                        ", the encoding's size is ", size_text(encoding->size)));
    }
    columns.push_back(std::move(column));
  }
  return columns;
}

struct FileInfo {
  std::string basename;  // relative to the dataset directory
  int64_t bytes = 0;
  std::vector<std::pair<std::string, std::string>> hashes;  // (algorithm, hex), implemented ones
};

// A raw_data / zip_data entry. Hash algorithms not implemented here are added to `unchecked`.
FileInfo parse_file_info(const Json& info, const std::string& where,
                         std::vector<std::string>& unchecked) {
  FileInfo file;
  file.basename = string_member(info, "basename", where);
  if (!is_safe_relative(file.basename)) {
    throw std::runtime_error(
        c10::str(where, "basename \"", file.basename, "\" leaves the dataset directory"));
  }
  file.bytes = integer_member(info, "bytes", where);
  const Json* listed = io::json_find(info, "hashes");
  if (listed == nullptr || listed->is_null()) return file;
  if (!listed->is_object()) throw std::runtime_error(where + "\"hashes\" must be an object");
  for (const auto& [algorithm, digest] : listed->items()) {
    if (!digest.is_string()) {
      throw std::runtime_error(c10::str(where, "hash ", algorithm, " must be a string"));
    }
    if (io::is_implemented_hash(algorithm)) {
      file.hashes.emplace_back(algorithm, digest.get<std::string>());
    } else if (std::find(unchecked.begin(), unchecked.end(), algorithm) == unchecked.end()) {
      unchecked.push_back(algorithm);
    }
  }
  return file;
}

// --------------------------------------------------------------------------------- shards

void check_length(const std::string& where, int64_t actual, int64_t expected) {
  if (actual < expected) {
    throw std::runtime_error(
        c10::str(where, "truncated: ", actual, " bytes, index.json says ", expected));
  }
  if (actual > expected) {
    throw std::runtime_error(c10::str(where, actual, " bytes, index.json says ", expected));
  }
}

void verify_hashes(const std::string& where, std::string_view data,
                   const std::vector<std::pair<std::string, std::string>>& hashes,
                   const char* what) {
  for (const auto& [algorithm, expected] : hashes) {
    const std::string got = *io::hex_digest(algorithm, data);
    if (got != expected) {
      throw std::runtime_error(c10::str(where, algorithm, " hash mismatch", what,
                                        ": index.json says ", expected, ", the file hashes to ",
                                        got));
    }
  }
}

// A whole file mapped read-only; its length must be `expected_size`.
class MappedFile {
 public:
  MappedFile(const fs::path& path, int64_t expected_size) {
    const std::string where = path.string() + ": ";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(c10::str(where, "cannot open: ", std::strerror(errno)));
    struct stat st {};
    const bool stat_ok = ::fstat(fd, &st) == 0;
    const int stat_errno = errno;
    if (stat_ok && st.st_size == expected_size && st.st_size > 0) {
      size_ = static_cast<std::size_t>(st.st_size);
      map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    const int map_errno = errno;
    ::close(fd);
    if (!stat_ok) {
      throw std::runtime_error(c10::str(where, "cannot stat: ", std::strerror(stat_errno)));
    }
    check_length(where, st.st_size, expected_size);
    if (map_ == MAP_FAILED) {
      throw std::runtime_error(c10::str(where, "mmap failed: ", std::strerror(map_errno)));
    }
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (map_ != nullptr && map_ != MAP_FAILED) ::munmap(map_, size_);
  }
  std::string_view bytes() const {
    return map_ == nullptr ? std::string_view()
                           : std::string_view(static_cast<const char*>(map_), size_);
  }

 private:
  void* map_ = nullptr;
  std::size_t size_ = 0;
};

// A shard's header: N (as index.json says), offsets[N+1] (absolute, increasing, the first after
// the header, the last at the end of the data), and a config JSON with index.json's columns.
void check_shard_layout(const std::string& where, std::string_view data, int64_t samples,
                        const std::vector<MDSColumn>& columns) {
  auto header_truncated = [&](int64_t needed) {
    throw std::runtime_error(c10::str(where, "truncated: ", data.size(),
                                      " bytes end inside its header of ", needed, " bytes"));
  };
  if (data.size() < 4) header_truncated(4);
  const int64_t n = load_u32(data, 0);
  if (n != samples) {
    throw std::runtime_error(c10::str(where, "holds ", n, " samples, index.json says ", samples));
  }
  const int64_t header = 4 + 4 * (n + 1);
  if (static_cast<int64_t>(data.size()) < header) header_truncated(header);
  const int64_t first = load_u32(data, 4);
  if (first < header) {
    throw std::runtime_error(c10::str(where, "bad offsets: the first sample starts at ", first,
                                      ", inside the ", header, "-byte header"));
  }
  for (int64_t j = 0; j < n; ++j) {
    const int64_t begin = load_u32(data, 4 + 4 * j), end = load_u32(data, 8 + 4 * j);
    if (end <= begin) {
      throw std::runtime_error(
          c10::str(where, "bad offsets: sample ", j, " spans [", begin, ", ", end, ")"));
    }
  }
  const int64_t last = load_u32(data, 4 + 4 * n);
  if (last != static_cast<int64_t>(data.size())) {
    throw std::runtime_error(c10::str(where, "bad offsets: the samples end at byte ", last,
                                      ", the data has ", data.size()));
  }
  const Json config = io::parse_json(data.substr(header, first - header), where + "config");
  Json names = Json::array(), encodings = Json::array();
  for (const auto& column : columns) {
    names.push_back(column.name);
    encodings.push_back(column.encoding);
  }
  const Json* config_names = io::json_find(config, "column_names");
  const Json* config_encodings = io::json_find(config, "column_encodings");
  if (config_names == nullptr || *config_names != names || config_encodings == nullptr ||
      *config_encodings != encodings) {
    throw std::runtime_error(where + "its config's columns differ from index.json");
  }
}

}  // namespace

// --------------------------------------------------------------------------------- MDSSample

const MDSValue& MDSSample::at(const std::string& column) const {
  const auto it = values_.find(column);
  if (it == values_.end()) {
    std::string have;
    for (const auto& [name, value] : values_) have += (have.empty() ? "" : ", ") + name;
    throw std::runtime_error(c10::str("MDS sample has no column \"", column,
                                      "\" (columns: ", have.empty() ? "none" : have, ")"));
  }
  return it->second;
}

namespace {
[[noreturn]] void wrong_kind(const std::string& column, const MDSValue& value, const char* want) {
  throw std::runtime_error(
      c10::str("MDS column \"", column, "\" holds a ", value_kind(value), ", not ", want));
}
}  // namespace

const std::string& MDSSample::bytes(const std::string& column) const {
  const MDSValue& value = at(column);
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  wrong_kind(column, value, "bytes or a string");
}

int64_t MDSSample::integer(const std::string& column) const {
  const MDSValue& value = at(column);
  if (const auto* v = std::get_if<int64_t>(&value)) return *v;
  if (const auto* t = std::get_if<at::Tensor>(&value)) {
    if (t->numel() == 1 && !at::isFloatingType(t->scalar_type())) {
      if (t->scalar_type() == at::kUInt64) {
        uint64_t v;
        std::memcpy(&v, t->contiguous().data_ptr(), 8);
        if (v > static_cast<uint64_t>(INT64_MAX)) {
          throw std::runtime_error(c10::str("MDS column \"", column, "\": ", v, " exceeds int64"));
        }
        return static_cast<int64_t>(v);
      }
      return t->to(at::kLong).item<int64_t>();
    }
  }
  wrong_kind(column, value, "an integer");
}

double MDSSample::real(const std::string& column) const {
  const MDSValue& value = at(column);
  if (const auto* v = std::get_if<double>(&value)) return *v;
  if (const auto* v = std::get_if<int64_t>(&value)) return static_cast<double>(*v);
  if (const auto* t = std::get_if<at::Tensor>(&value)) {
    if (t->numel() == 1) {
      if (t->scalar_type() == at::kUInt64) {
        uint64_t v;
        std::memcpy(&v, t->contiguous().data_ptr(), 8);
        return static_cast<double>(v);
      }
      return t->to(at::kDouble).item<double>();
    }
  }
  wrong_kind(column, value, "a number");
}

const at::Tensor& MDSSample::tensor(const std::string& column) const {
  const MDSValue& value = at(column);
  if (const auto* t = std::get_if<at::Tensor>(&value)) return *t;
  wrong_kind(column, value, "a tensor");
}

// --------------------------------------------------------------------------------- MDSReader

struct MDSReader::Shard {
  int64_t samples = 0;
  FileInfo raw;                 // the uncompressed shard
  std::optional<FileInfo> zip;  // the compressed file, when compressed

  // As streaming: the uncompressed file when present, else the compressed one.
  bool read_zip(const fs::path& dir) const { return zip && !fs::exists(dir / raw.basename); }
};

struct MDSReader::Loaded {
  std::string path;                   // for messages
  std::optional<MappedFile> mapping;  // an uncompressed shard
  std::string decompressed;           // a zstd shard
  std::string_view data;              // the shard's bytes, in one of the two above

  // Sample j's bytes; the offsets were checked when the shard was opened.
  std::string_view sample(int64_t j) const {
    const uint32_t begin = load_u32(data, 4 + 4 * j);
    const uint32_t end = load_u32(data, 8 + 4 * j);
    return data.substr(begin, end - begin);
  }
};

struct MDSReader::Cache {
  std::mutex mutex;
  std::list<int64_t> order;  // most recently used first
  std::unordered_map<int64_t,
                     std::pair<std::shared_ptr<const Loaded>, std::list<int64_t>::iterator>>
      open;
  int64_t bytes = 0;
  std::vector<char> hashes_checked;  // per shard
};

MDSReader::MDSReader(const fs::path& dir, const MDSReaderOptions& options)
    : dir_(dir), options_(options), shard_starts_{0}, cache_(std::make_unique<Cache>()) {
  const fs::path index_path = dir / "index.json";
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    throw std::runtime_error(c10::str(dir.string(), ": no such MDS dataset directory"));
  }
  if (!fs::exists(index_path, error)) {
    throw std::runtime_error(c10::str(index_path.string(), ": missing (not an MDS directory?)"));
  }
  const Json index = io::read_json_file(index_path);
  const std::string top = c10::str(index_path.string(), ": ");
  if (!index.is_object()) throw std::runtime_error(top + "not a JSON object");
  const Json& version = member(index, "version", top);
  if (io::json_int64(version) != kVersion) {
    throw std::runtime_error(
        c10::str(top, "version ", python_json(version, false), " is not supported (expected 2)"));
  }
  const auto& shards = array_member(index, "shards", top);
  std::vector<std::string> unchecked;
  for (std::size_t k = 0; k < shards.size(); ++k) {
    const Json& s = shards[k];
    const std::string where = c10::str(top, "shard ", k, ": ");
    if (!s.is_object()) throw std::runtime_error(where + "not a JSON object");
    if (const Json* v = io::json_find(s, "version");
        v != nullptr && io::json_int64(*v) != kVersion) {
      throw std::runtime_error(
          c10::str(where, "version ", python_json(*v, false), " is not supported (expected 2)"));
    }
    if (const auto& format = string_member(s, "format", where); format != "mds") {
      throw std::runtime_error(
          c10::str(where, "format \"", format, "\" is not supported (expected mds)"));
    }
    std::vector<MDSColumn> columns = parse_columns(s, where);
    if (k == 0) {
      columns_ = columns;
    } else if (!std::equal(columns.begin(), columns.end(), columns_.begin(), columns_.end(),
                           [](const MDSColumn& a, const MDSColumn& b) {
                             return a.name == b.name && a.encoding == b.encoding;
                           })) {
      throw std::runtime_error(where + "its columns differ from those of shard 0");
    }
    Shard shard;
    shard.samples = integer_member(s, "samples", where);
    shard.raw = parse_file_info(member(s, "raw_data", where), where + "raw_data: ", unchecked);
    const Json* compression = io::json_find(s, "compression");
    if (compression != nullptr && !compression->is_null()) {
      if (!compression->is_string()) {
        throw std::runtime_error(where + "\"compression\" must be a string or null");
      }
      parse_compression<std::runtime_error>(compression->get<std::string>(), where);
      const Json* zip = io::json_find(s, "zip_data");
      if (zip == nullptr || !zip->is_object()) {
        throw std::runtime_error(where + "compressed, but \"zip_data\" is missing");
      }
      shard.zip = parse_file_info(*zip, where + "zip_data: ", unchecked);
    }
    int64_t end = 0;
    if (__builtin_add_overflow(shard_starts_.back(), shard.samples, &end)) {
      throw std::runtime_error(where + "the shards' sample counts add up to more than int64 holds");
    }
    shard_starts_.push_back(end);
    shards_.push_back(std::move(shard));
  }
  cache_->hashes_checked.assign(shards_.size(), 0);
  unchecked_hashes_ = std::move(unchecked);
  if (options_.verify_hashes && !unchecked_hashes_.empty()) {
    std::string list;
    for (const auto& name : unchecked_hashes_) list += (list.empty() ? "" : ", ") + name;
    std::cerr << "note: " << index_path.string()
              << ": hashes not checked (not implemented): " << list << "\n";
  }
}

MDSReader::~MDSReader() = default;
MDSReader::MDSReader(MDSReader&&) noexcept = default;
MDSReader& MDSReader::operator=(MDSReader&&) noexcept = default;

int64_t MDSReader::num_shards() const { return static_cast<int64_t>(shards_.size()); }

std::vector<std::string> MDSReader::columns() const {
  std::vector<std::string> names;
  for (const auto& column : columns_) names.push_back(column.name);
  return names;
}

std::shared_ptr<const MDSReader::Loaded> MDSReader::open_shard(int64_t k, bool check_hashes) const {
  const Shard& shard = shards_[k];
  auto loaded = std::make_shared<Loaded>();
  const bool zipped = shard.read_zip(dir_);
  const fs::path path = dir_ / (zipped ? shard.zip : shard.raw)->basename;
  loaded->path = path.string();
  const std::string where = loaded->path + ": ";
  if (zipped) {
    const std::string zip = io::read_file(path);
    check_length(where, static_cast<int64_t>(zip.size()), shard.zip->bytes);
    if (check_hashes) verify_hashes(where, zip, shard.zip->hashes, "");
    loaded->decompressed = zstd_decompress(zip, shard.raw.bytes, where);
    loaded->data = loaded->decompressed;
  } else {
    loaded->data = loaded->mapping.emplace(path, shard.raw.bytes).bytes();
  }
  if (check_hashes) {
    verify_hashes(where, loaded->data, shard.raw.hashes, zipped ? " (decompressed)" : "");
  }
  check_shard_layout(where, loaded->data, shard.samples, columns_);
  return loaded;
}

std::shared_ptr<const MDSReader::Loaded> MDSReader::load(int64_t k) const {
  bool check_hashes = false;
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (auto it = cache_->open.find(k); it != cache_->open.end()) {
      cache_->order.splice(cache_->order.begin(), cache_->order, it->second.second);
      return it->second.first;
    }
    check_hashes = options_.verify_hashes && !cache_->hashes_checked[k];
  }
  // Opened without the lock: other threads keep reading cached shards meanwhile.
  auto loaded = open_shard(k, check_hashes);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  cache_->hashes_checked[k] = 1;
  if (auto it = cache_->open.find(k); it != cache_->open.end()) return it->second.first;
  cache_->order.push_front(k);
  cache_->open.emplace(k, std::make_pair(loaded, cache_->order.begin()));
  cache_->bytes += static_cast<int64_t>(loaded->decompressed.size());
  while (cache_->order.size() > 1 &&
         (cache_->bytes > options_.cache_bytes ||
          static_cast<int64_t>(cache_->order.size()) > options_.max_open_shards)) {
    const int64_t victim = cache_->order.back();
    cache_->order.pop_back();
    auto it = cache_->open.find(victim);
    cache_->bytes -= static_cast<int64_t>(it->second.first->decompressed.size());
    cache_->open.erase(it);  // readers still holding it keep it alive
  }
  return loaded;
}

MDSSample MDSReader::get(int64_t i) const { return get(i, columns()); }

std::string MDSReader::describe_sample(int64_t i) const {
  check_index(i, size(), c10::str("MDS dataset ", dir_.string()));
  const int64_t k = shard_of(i);
  const Shard& shard = shards_[k];
  const FileInfo& file = shard.read_zip(dir_) ? *shard.zip : shard.raw;
  return c10::str((dir_ / file.basename).string(), ": sample ", i - shard_starts_[k],
                  " (dataset index ", i, ")");
}

int64_t MDSReader::shard_of(int64_t i) const {
  return std::upper_bound(shard_starts_.begin(), shard_starts_.end(), i) - shard_starts_.begin() -
         1;
}

MDSSample MDSReader::get(int64_t i, const std::vector<std::string>& wanted) const {
  check_index(i, size(), c10::str("MDS dataset ", dir_.string()));
  std::vector<std::size_t> picks;
  for (const auto& name : wanted) {
    const auto it = std::find_if(columns_.begin(), columns_.end(),
                                 [&](const MDSColumn& c) { return c.name == name; });
    if (it == columns_.end()) {
      std::string have;
      for (const auto& column : columns_) have += (have.empty() ? "" : ", ") + column.name;
      throw std::runtime_error(
          c10::str(dir_.string(), ": no column \"", name, "\" (columns: ", have, ")"));
    }
    picks.push_back(static_cast<std::size_t>(it - columns_.begin()));
  }
  const int64_t k = shard_of(i);
  const int64_t j = i - shard_starts_[k];
  const auto loaded = load(k);
  const std::string_view data = loaded->sample(j);
  const std::string where = c10::str(loaded->path, ": sample ", j, " (dataset index ", i, "): ");

  // Sizes: fixed ones from the index, variable ones from the uint32 prefix, in column order.
  std::vector<std::size_t> sizes;
  std::size_t pos = 0;
  for (const auto& column : columns_) {
    if (column.size) {
      sizes.push_back(static_cast<std::size_t>(*column.size));
    } else {
      if (data.size() < pos + 4) {
        throw std::runtime_error(
            c10::str(where, data.size(), " bytes end inside the column sizes"));
      }
      sizes.push_back(load_u32(data, pos));
      pos += 4;
    }
  }
  std::size_t total = pos;
  for (std::size_t size : sizes) {
    if (__builtin_add_overflow(total, size, &total)) total = SIZE_MAX;  // then != data.size()
  }
  if (total != data.size()) {
    throw std::runtime_error(c10::str(where, "the column sizes add up to ", total,
                                      " bytes, the sample has ", data.size()));
  }
  std::vector<std::size_t> starts;
  for (std::size_t size : sizes) {
    starts.push_back(pos);
    pos += size;
  }
  MDSSample sample;
  for (std::size_t c : picks) {
    const MDSColumn& column = columns_[c];
    try {
      sample.set(column.name,
                 decode_value(data.substr(starts[c], sizes[c]), *parse_encoding(column.encoding)));
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(
          c10::str(where, "column \"", column.name, "\" (", column.encoding, "): ", e.what()));
    }
  }
  return sample;
}

// --------------------------------------------------------------------------------- MDSWriter

MDSWriter::MDSWriter(const fs::path& dir, std::vector<std::pair<std::string, std::string>> columns,
                     int64_t size_limit, std::string compression, std::vector<std::string> hashes)
    : dir_(dir),
      size_limit_(size_limit),
      compression_(std::move(compression)),
      hashes_(std::move(hashes)) {
  const std::string where = c10::str("MDSWriter ", dir.string(), ": ");
  if (columns.empty()) throw std::invalid_argument(where + "no columns");
  std::sort(columns.begin(), columns.end());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    const auto& [name, encoding_text] = columns[c];
    if (c > 0 && name == columns[c - 1].first) {
      throw std::invalid_argument(c10::str(where, "column \"", name, "\" listed twice"));
    }
    const auto encoding = parse_encoding(encoding_text);
    if (!encoding) {
      throw std::invalid_argument(
          c10::str(where, "column \"", name, "\" has unknown encoding \"", encoding_text, "\""));
    }
    if (encoding->kind == Kind::unsupported) {
      throw std::invalid_argument(
          c10::str(where, "column \"", name, "\": ", encoding->unsupported));
    }
    columns_.push_back({name, encoding_text, encoding->size});
  }
  if (size_limit_ < 0 || size_limit_ >= kMaxSizeLimit) {
    throw std::invalid_argument(
        c10::str(where, "size_limit ", size_limit_, " must be in [0, 2^32) (0: one shard)"));
  }
  if (!compression_.empty()) {
    zstd_level_ = parse_compression<std::invalid_argument>(compression_, where);
  }
  for (std::size_t h = 0; h < hashes_.size(); ++h) {
    if (h > 0 && hashes_[h] <= hashes_[h - 1]) {
      throw std::invalid_argument(where +
                                  "hashes must be unique and sorted, as streaming requires");
    }
    if (!io::is_implemented_hash(hashes_[h])) {
      throw std::invalid_argument(c10::str(where, "hash \"", hashes_[h],
                                           "\" is not implemented (md5, sha1, xxh32, xxh64 are)"));
    }
  }
  std::error_code error;
  if (fs::exists(dir, error) && !fs::is_empty(dir, error)) {
    throw std::runtime_error(c10::str(where, "the directory is not empty"));
  }
  fs::create_directories(dir);

  io::JsonArray names, encodings, sizes;
  for (const auto& column : columns_) {
    names.emplace_back(column.name);
    encodings.emplace_back(column.encoding);
    sizes.push_back(column.size ? Json(*column.size) : Json());
  }
  // streaming's Writer.get_config() plus the MDS columns, dumped with sort_keys.
  Json config = Json::object();
  config["version"] = kVersion;
  config["format"] = "mds";
  config["compression"] = compression_.empty() ? Json() : Json(compression_);
  config["hashes"] = hashes_;
  config["size_limit"] = size_limit_ > 0 ? Json(size_limit_) : Json();
  config["column_names"] = std::move(names);
  config["column_encodings"] = std::move(encodings);
  config["column_sizes"] = std::move(sizes);
  config_ = python_json(config, /*sort_keys=*/true);
  pending_bytes_ = 4 + 4 + static_cast<int64_t>(config_.size());
}

MDSWriter::~MDSWriter() = default;

std::string MDSWriter::encode_sample(const MDSSample& sample) const {
  std::string head, body;
  for (const auto& column : columns_) {
    std::string data;
    try {
      data = encode_value(sample.at(column.name), *parse_encoding(column.encoding));
    } catch (const std::exception& e) {
      throw std::invalid_argument(c10::str("MDSWriter ", dir_.string(), ": column \"", column.name,
                                           "\" (", column.encoding, "): ", util::error_message(e)));
    }
    if (column.size) {
      if (static_cast<int64_t>(data.size()) != *column.size) {
        throw std::invalid_argument(c10::str(
            "MDSWriter ", dir_.string(), ": column \"", column.name, "\" (", column.encoding,
            "): ", data.size(), " bytes, the encoding stores ", *column.size));
      }
    } else {
      if (data.size() > UINT32_MAX) {
        throw std::invalid_argument(
            c10::str("MDSWriter: column \"", column.name, "\" exceeds 4 GiB"));
      }
      const auto size = static_cast<uint32_t>(data.size());
      head.append(reinterpret_cast<const char*>(&size), 4);
    }
    body += data;
  }
  return head + body;
}

void MDSWriter::write(const MDSSample& sample) {
  if (finished_) {
    throw std::logic_error(c10::str("MDSWriter ", dir_.string(), ": already finished"));
  }
  std::string data = encode_sample(sample);
  const int64_t cost = static_cast<int64_t>(data.size()) + 4;  // the sample and its offset
  // As streaming: this flushes even an empty shard when the first sample alone exceeds the limit.
  if (size_limit_ > 0 && size_limit_ < pending_bytes_ + cost) {
    flush_shard();
  }
  pending_.push_back(std::move(data));
  pending_bytes_ += cost;
}

void MDSWriter::flush_shard() {
  const auto n = static_cast<uint32_t>(pending_.size());
  std::string raw = scalar_bytes(n);
  uint64_t offset = 4 + 4 * (uint64_t{n} + 1) + config_.size();
  for (std::size_t j = 0; j <= pending_.size(); ++j) {
    if (offset > UINT32_MAX) {
      throw std::runtime_error(c10::str("MDSWriter ", dir_.string(), ": shard ",
                                        shard_entries_.size(),
                                        " would exceed 4 GiB (uint32 offsets); lower size_limit"));
    }
    raw += scalar_bytes(static_cast<uint32_t>(offset));
    if (j < pending_.size()) offset += pending_[j].size();
  }
  raw += config_;
  for (const auto& data : pending_) raw += data;

  std::ostringstream name;
  name << "shard." << std::setw(5) << std::setfill('0') << shard_entries_.size() << ".mds";
  auto file_info = [&](const std::string& basename, std::string_view data) {
    Json digests = Json::object();
    for (const auto& h : hashes_) digests[h] = *io::hex_digest(h, data);
    Json info = Json::object();
    info["basename"] = basename;
    info["bytes"] = static_cast<int64_t>(data.size());
    info["hashes"] = std::move(digests);
    return info;
  };
  Json entry = io::parse_json(config_, "MDS shard config");
  entry["samples"] = static_cast<int64_t>(n);
  entry["raw_data"] = file_info(name.str(), raw);
  if (compression_.empty()) {
    entry["zip_data"] = Json();
    write_bytes(dir_ / name.str(), raw);
  } else {
    const std::string zip_name = name.str() + ".zstd";
    const std::string zip = zstd_compress(raw, zstd_level_);
    entry["zip_data"] = file_info(zip_name, zip);
    write_bytes(dir_ / zip_name, zip);
  }
  shard_entries_.push_back(python_json(entry, /*sort_keys=*/true));
  pending_.clear();
  pending_bytes_ = 4 + 4 + static_cast<int64_t>(config_.size());
}

void MDSWriter::finish() {
  if (finished_) return;
  if (!pending_.empty()) flush_shard();
  std::string index = "{\"shards\": [";
  for (std::size_t k = 0; k < shard_entries_.size(); ++k) {
    index += (k > 0 ? ", " : "") + shard_entries_[k];
  }
  index += "], \"version\": 2}";
  write_bytes(dir_ / "index.json", index);
  finished_ = true;
}

// ------------------------------------------------------------------------------ merge_index

void merge_index(const fs::path& root, const std::vector<std::string>& subdirs) {
  io::JsonArray shards;
  for (std::size_t s = 0; s < subdirs.size(); ++s) {
    const std::string& subdir = subdirs[s];
    if (!is_safe_relative(subdir)) {
      throw std::invalid_argument(
          c10::str("merge_index: \"", subdir, "\" must be a relative path inside ", root.string()));
    }
    if (std::find(subdirs.begin(), subdirs.begin() + s, subdir) != subdirs.begin() + s) {
      throw std::invalid_argument(c10::str("merge_index: \"", subdir, "\" listed twice"));
    }
    const fs::path path = root / subdir / "index.json";
    const Json index = io::read_json_file(path);
    try {
      for (const Json& shard : io::json_to_array(io::json_at(index, "shards"))) {
        Json copy = shard;
        for (const char* key : {"raw_data", "zip_data", "raw_meta", "zip_meta"}) {
          const Json* info = io::json_find(copy, key);
          if (info == nullptr || !info->is_object() || info->size() == 0) continue;
          Json renamed = *info;
          const std::string prefix = fs::path(subdir).generic_string();
          renamed["basename"] = prefix + "/" + io::json_to_string(io::json_at(*info, "basename"));
          copy[key] = std::move(renamed);
        }
        shards.push_back(std::move(copy));
      }
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(c10::str(path.string(), ": ", e.what()));
    }
  }
  // Not sorted: streaming's merge_index dumps {"version": 2, "shards": [...]} in this order.
  Json merged = Json::object();
  merged["version"] = kVersion;
  merged["shards"] = std::move(shards);
  write_bytes(root / "index.json", python_json(merged, /*sort_keys=*/false));
}

// --------------------------------------------------------------------------- float repr

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits (as Python's repr), as "d.ddde±x".
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string_view text(buffer, static_cast<std::size_t>(result.ptr - buffer));
  const bool negative = text.front() == '-';
  const auto e = text.find('e');
  std::string digits;
  for (char c : text.substr(negative ? 1 : 0, e - (negative ? 1 : 0))) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = 0;
  std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(),
                  exponent);
  const int point = exponent + 1;  // digits d1 d2 ... times 10^point, point before d1
  const int n = static_cast<int>(digits.size());
  std::string out = negative ? "-" : "";
  // Python's float_repr_style 'short': exponent notation when point <= -4 or point > 16.
  if (point <= -4 || point > 16) {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    const int shown = point - 1;
    out += shown < 0 ? "e-" : "e+";
    const std::string magnitude = std::to_string(std::abs(shown));
    out += (magnitude.size() < 2 ? "0" : "") + magnitude;
  } else if (point <= 0) {
    out += "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  } else if (point >= n) {
    out += digits + std::string(static_cast<std::size_t>(point - n), '0') + ".0";
  } else {
    out += digits.substr(0, point) + "." + digits.substr(point);
  }
  return out;
}

}  // namespace microdit::data
