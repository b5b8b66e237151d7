// safetensors reader and writer (format: huggingface/safetensors: a little-endian u64 header
// length, a JSON header of dtype, shape and data offsets per tensor, then the raw bytes).
// Our own code because Debian packages no C or C++ safetensors library; nlohmann-json reads and
// writes the header, and the rest is the length and raw tensor bytes.
#include "microdit/io/safetensors.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"
#include "microdit/util/error_message.h"

namespace microdit::io {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace {

constexpr std::uint64_t kMaxHeaderSize = 100'000'000;  // reference MAX_HEADER_SIZE

struct DtypeInfo {
  std::string_view name;
  std::uint64_t bits;
  std::optional<at::ScalarType> scalar;  // nullopt: LibTorch has no matching type
};

// In the order of the reference `Dtype` enum: the writer sorts tensors by this, descending.
constexpr std::array<DtypeInfo, 22> kDtypes{{
    {"BOOL", 8, at::kBool},
    {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt},
    {"U8", 8, at::kByte},
    {"I8", 8, at::kChar},
    {"F8_E5M2", 8, at::kFloat8_e5m2},
    {"F8_E4M3", 8, at::kFloat8_e4m3fn},
    {"F8_E8M0", 8, at::kFloat8_e8m0fnu},
    {"F8_E4M3FNUZ", 8, at::kFloat8_e4m3fnuz},
    {"F8_E5M2FNUZ", 8, at::kFloat8_e5m2fnuz},
    {"I16", 16, at::kShort},
    {"U16", 16, at::kUInt16},
    {"F16", 16, at::kHalf},
    {"BF16", 16, at::kBFloat16},
    {"I32", 32, at::kInt},
    {"U32", 32, at::kUInt32},
    {"F32", 32, at::kFloat},
    {"C64", 64, at::kComplexFloat},
    {"F64", 64, at::kDouble},
    {"I64", 64, at::kLong},
    {"U64", 64, at::kUInt64},
}};

const DtypeInfo* find_dtype(std::string_view name) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

const DtypeInfo* find_dtype(at::ScalarType type) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.scalar == type) return &d;
  }
  return nullptr;
}

// One tensor as the header describes it.
struct Entry {
  std::string name;
  const DtypeInfo* dtype = nullptr;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

[[noreturn]] void fail(std::string message) { throw std::runtime_error(std::move(message)); }

std::vector<std::uint64_t> non_negative_ints(const Json& value, std::string_view what,
                                             std::string_view tensor) {
  std::vector<std::uint64_t> out;
  const bool ok = value.is_array() && std::all_of(value.begin(), value.end(), [](const Json& v) {
                    return json_int64(v).value_or(-1) >= 0;
                  });
  if (!ok) {
    fail(c10::str("tensor ", tensor, ": ", what, " must be an array of non-negative integers, got ",
                  value.dump()));
  }
  for (const Json& v : value) out.push_back(static_cast<std::uint64_t>(*json_int64(v)));
  return out;
}

const Json& field(const Json& entry, std::string_view key, std::string_view tensor) {
  const Json* value = json_find(entry, key);
  if (value == nullptr) fail(c10::str("tensor ", tensor, ": missing field \"", key, "\""));
  return *value;
}

// Unknown fields are ignored, as serde does for the reference reader.
Entry parse_entry(const std::string& name, const Json& value) {
  if (!value.is_object()) {
    fail(c10::str("tensor ", name, ": entry is a JSON ", json_type_name(value),
                  ", expected an object"));
  }
  Entry entry;
  entry.name = name;
  const Json& dtype = field(value, "dtype", name);
  if (!dtype.is_string()) fail(c10::str("tensor ", name, ": dtype must be a string"));
  entry.dtype = find_dtype(io::json_to_string(dtype));
  if (entry.dtype == nullptr) {
    fail(c10::str("tensor ", name, ": unknown dtype \"", io::json_to_string(dtype), "\""));
  }
  if (!entry.dtype->scalar) {
    fail(c10::str("unsupported dtype ", entry.dtype->name, " for tensor ", name,
                  " (LibTorch has no such type)"));
  }
  for (std::uint64_t dim : non_negative_ints(field(value, "shape", name), "shape", name)) {
    entry.shape.push_back(static_cast<std::int64_t>(dim));
  }
  const auto offsets = non_negative_ints(field(value, "data_offsets", name), "data_offsets", name);
  if (offsets.size() != 2) {
    fail(c10::str("tensor ", name, ": data_offsets must be [BEGIN, END], got ", offsets.size(),
                  " numbers"));
  }
  entry.begin = offsets[0];
  entry.end = offsets[1];
  return entry;
}

void read_metadata(const Json& value, std::map<std::string, std::string>* metadata) {
  if (value.is_null()) return;
  if (!value.is_object()) fail("__metadata__ must be an object of strings");
  for (const auto& [key, text] : io::json_to_object(value)) {
    if (!text.is_string()) {
      fail(c10::str("__metadata__ entry \"", key, "\" is a JSON ", json_type_name(text),
                    ", expected a string"));
    }
    (*metadata)[key] = io::json_to_string(text);
  }
}

std::vector<Entry> parse_header(std::string_view text,
                                std::map<std::string, std::string>* metadata) {
  const Json header = parse_json(text, "header");
  if (!header.is_object()) {
    fail(c10::str("header is a JSON ", json_type_name(header), ", expected an object"));
  }
  std::vector<Entry> entries;
  for (const auto& [key, value] : io::json_to_object(header)) {
    if (key == "__metadata__") {
      read_metadata(value, metadata);
    } else {
      entries.push_back(parse_entry(key, value));
    }
  }
  return entries;
}

std::uint64_t checked_byte_size(const Entry& entry) {
  std::uint64_t numel = 1;
  for (std::int64_t dim : entry.shape) {
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dim), &numel)) {
      fail(c10::str("tensor ", entry.name, ": shape ", shape_string(entry.shape), " overflows"));
    }
  }
  std::uint64_t bits = 0;
  if (__builtin_mul_overflow(numel, entry.dtype->bits, &bits)) {
    fail(c10::str("tensor ", entry.name, ": shape ", shape_string(entry.shape), " overflows"));
  }
  if (bits % 8 != 0) {
    fail(c10::str("tensor ", entry.name, ": ", numel, " elements of ", entry.dtype->name,
                  " do not fill whole bytes"));
  }
  return bits / 8;
}

// Sorts by offsets and checks they tile [0, END) exactly; returns the data buffer size.
std::uint64_t validate_offsets(std::vector<Entry>& entries) {
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::uint64_t next = 0;
  for (const Entry& e : entries) {
    if (e.begin != next || e.end < e.begin) {
      fail(c10::str("tensor ", e.name, " has data_offsets [", e.begin, ",", e.end,
                    "], expected it to start at byte ", next,
                    ": offsets must be contiguous from 0 without gaps or overlaps"));
    }
    const std::uint64_t size = checked_byte_size(e);
    if (e.end - e.begin != size) {
      fail(c10::str("tensor ", e.name, ": data_offsets [", e.begin, ",", e.end, "] span ",
                    e.end - e.begin, " bytes, but ", e.dtype->name, " ", shape_string(e.shape),
                    " needs ", size, " bytes"));
    }
    next = e.end;
  }
  return next;
}

void check_file_size(std::uint64_t file_size, std::uint64_t expected) {
  if (file_size < expected) {
    fail(
        c10::str("file is truncated: header describes ", expected, " bytes, file has ", file_size));
  }
  if (file_size > expected) {
    fail(c10::str(file_size - expected, " trailing bytes after the tensor data: expected ",
                  expected, " bytes, file has ", file_size));
  }
}

void read_exactly(std::istream& in, void* dst, std::uint64_t n, std::string_view what) {
  in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (static_cast<std::uint64_t>(in.gcount()) != n) {
    fail(c10::str("read error in ", what, " (", in.gcount(), " of ", n, " bytes)"));
  }
}

// `in` holds the whole file, `file_size` bytes.
TensorMap load_impl(std::istream& in, std::uint64_t file_size,
                    std::map<std::string, std::string>* metadata) {
  if (file_size < 8) {
    fail(c10::str("file is ", file_size, " bytes, too short for the 8-byte header length"));
  }
  std::uint64_t header_size = 0;
  read_exactly(in, &header_size, 8, "the header length");
  if (header_size > kMaxHeaderSize) {
    fail(c10::str("header length ", header_size, " exceeds the limit of ", kMaxHeaderSize,
                  " bytes"));
  }
  if (header_size > file_size - 8) {
    fail(c10::str("header length ", header_size, " runs past the end of the file (", file_size,
                  " bytes)"));
  }
  std::string header(header_size, '\0');
  read_exactly(in, header.data(), header_size, "the header");
  std::map<std::string, std::string> header_metadata;
  std::vector<Entry> entries = parse_header(header, &header_metadata);
  check_file_size(file_size, 8 + header_size + validate_offsets(entries));

  TensorMap tensors;
  for (const Entry& e : entries) {  // offset order: one sequential pass over the file
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(*e.dtype->scalar));
    if (e.end > e.begin) read_exactly(in, t.data_ptr(), e.end - e.begin, "tensor " + e.name);
    tensors.emplace(e.name, std::move(t));
  }
  if (metadata != nullptr) *metadata = std::move(header_metadata);
  return tensors;
}

// ---------------------------------------------------------------------------------------------
// Writer

struct Prepared {
  std::string name;
  const DtypeInfo* dtype;
  at::Tensor data;  // contiguous CPU
};

std::vector<Prepared> prepare(const TensorMap& tensors) {
  std::vector<Prepared> out;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) fail(c10::str("tensor ", name, " is undefined"));
    if (name == "__metadata__") fail("\"__metadata__\" is reserved and cannot name a tensor");
    const DtypeInfo* dtype = find_dtype(tensor.scalar_type());
    if (dtype == nullptr) {
      fail(c10::str("tensor ", name, ": dtype ", c10::toString(tensor.scalar_type()),
                    " has no safetensors code"));
    }
    at::Tensor data = tensor.detach().to(at::kCPU).resolve_conj().resolve_neg().contiguous();
    out.push_back({name, dtype, std::move(data)});
  }
  // Reference writer order: descending dtype, then name; keeps each tensor naturally aligned.
  std::stable_sort(out.begin(), out.end(), [](const Prepared& a, const Prepared& b) {
    if (a.dtype != b.dtype) return a.dtype > b.dtype;
    return a.name < b.name;
  });
  return out;
}

std::string build_header(const std::vector<Prepared>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const Prepared& p : tensors) {
    const std::uint64_t end = offset + p.data.nbytes();
    header[p.name] = {{"dtype", p.dtype->name},
                      {"shape", p.data.sizes().vec()},
                      {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::type_error& e) {  // a name or metadata text that is not UTF-8
    fail(c10::str("cannot write the header: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  return text;
}

void write_contents(std::ostream& out, const std::string& header,
                    const std::vector<Prepared>& tensors) {
  const std::uint64_t header_size = header.size();
  out.write(reinterpret_cast<const char*>(&header_size), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const Prepared& p : tensors) {
    out.write(static_cast<const char*>(p.data.const_data_ptr()),
              static_cast<std::streamsize>(p.data.nbytes()));
  }
}

[[noreturn]] void rethrow_with_path(const fs::path& path, const std::exception& e) {
  throw std::runtime_error(c10::str(path.string(), ": ", util::error_message(e)));
}

}  // namespace

std::optional<std::string_view> safetensors_dtype_name(at::ScalarType type) {
  const DtypeInfo* dtype = find_dtype(type);
  if (dtype == nullptr) return std::nullopt;
  return dtype->name;
}

TensorMap load_safetensors(const fs::path& path, std::map<std::string, std::string>* metadata) {
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(c10::str("cannot open: ", std::strerror(errno)));
    if (fs::is_directory(path)) fail("is a directory, not a file");  // it opens, and has no size
    return load_impl(in, fs::file_size(path), metadata);
  } catch (const std::exception& e) {
    rethrow_with_path(path, e);
  }
}

TensorMap parse_safetensors(std::string_view bytes, const std::string& name_for_errors,
                            std::map<std::string, std::string>* metadata) {
  // A read-only view of `bytes` as a stream, without copying them.
  struct ViewBuffer : std::streambuf {
    explicit ViewBuffer(std::string_view b) {
      char* begin = const_cast<char*>(b.data());
      setg(begin, begin, begin + b.size());
    }
  } buffer(bytes);
  std::istream in(&buffer);
  try {
    return load_impl(in, bytes.size(), metadata);
  } catch (const std::exception& e) {
    rethrow_with_path(name_for_errors, e);
  }
}

void save_safetensors(const fs::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<Prepared> prepared;
  std::string header;
  try {
    prepared = prepare(tensors);
    header = build_header(prepared, metadata);
  } catch (const std::exception& e) {
    rethrow_with_path(path, e);
  }
  write_file_atomically(path, [&](std::ostream& out) { write_contents(out, header, prepared); });
}

}  // namespace microdit::io
