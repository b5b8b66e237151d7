// MosaicML Streaming's MDS format (streaming.base.format.mds, index version 2): a directory with
// index.json and shard files `shard.NNNNN.mds` (or `.mds.zstd`), each holding
//   uint32 N | uint32 offsets[N+1] (absolute) | config JSON | N samples,
// a sample being one uint32 size per variable-size column, then every column's bytes, columns
// sorted by name. The official MicroDiT data is stored this way (caption str, caption_latents and
// latents_<res> raw fp16 bytes).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace microdit::data {

// A decoded column value:
//   std::string  bytes, str, json (the JSON text as stored), str_decimal (the digits)
//   int64_t      int, str_int
//   double       str_float
//   at::Tensor   uint8..uint64, int8..int64, float16/32/64 (0-d, that dtype); ndarray (its dtype
//                and shape; uint16/32/64 are LibTorch's barebones unsigned dtypes)
using MDSValue = std::variant<std::string, int64_t, double, at::Tensor>;

// One sample: column name -> value. The accessors throw std::runtime_error naming the column
// when it is absent or holds another kind of value.
class MDSSample {
 public:
  MDSSample() = default;
  MDSSample(std::initializer_list<std::pair<const std::string, MDSValue>> values)
      : values_(values) {}

  void set(std::string column, MDSValue value) { values_[std::move(column)] = std::move(value); }
  bool contains(const std::string& column) const { return values_.count(column) != 0; }
  const MDSValue& at(const std::string& column) const;
  const std::map<std::string, MDSValue>& values() const { return values_; }

  const std::string& bytes(const std::string& column) const;  // any std::string value
  const std::string& str(const std::string& column) const { return bytes(column); }
  int64_t integer(const std::string& column) const;  // int64_t, or an integral 0-d/1-element tensor
  double real(const std::string& column) const;      // double, int64_t, or a 0-d/1-element tensor
  const at::Tensor& tensor(const std::string& column) const;

 private:
  std::map<std::string, MDSValue> values_;
};

struct MDSColumn {
  std::string name;
  std::string encoding;         // e.g. "bytes", "ndarray:float16:4,32,32"
  std::optional<int64_t> size;  // bytes per sample when fixed (index.json column_sizes)
};

struct MDSReaderOptions {
  // Decompressed (zstd) shards kept in memory, least recently used evicted first; the shard in
  // use is always kept. Uncompressed shards are memory-mapped and count against max_open_shards.
  int64_t cache_bytes = int64_t{1} << 30;
  int64_t max_open_shards = 256;
  // Check the md5/sha1/xxh32/xxh64 digests listed in index.json when a shard is first read.
  bool verify_hashes = true;
};

// Random access to the samples of an MDS directory (one written by MDSWriter, or a merged index
// whose shard basenames are relative paths such as "0/shard.00000.mds").
//
// The constructor reads index.json only; each shard is opened on first access and then checked
// once: its file length against index.json, the listed digests (other algorithms, e.g. xxh3_64,
// are reported once on stderr and not checked), zstd decompression to the listed raw length, its
// sample count and offsets (increasing, inside the file, ending at its end) and its config's
// columns. Errors are std::runtime_error naming index.json or the shard file and the problem.
// get() is safe to call from several threads at once.
class MDSReader {
 public:
  explicit MDSReader(const std::filesystem::path& dir, const MDSReaderOptions& options = {});
  ~MDSReader();
  MDSReader(MDSReader&&) noexcept;
  MDSReader& operator=(MDSReader&&) noexcept;

  int64_t size() const { return shard_starts_.back(); }
  int64_t num_shards() const;
  const std::filesystem::path& directory() const { return dir_; }
  std::vector<std::string> columns() const;  // sorted by name, as stored
  const std::vector<MDSColumn>& column_info() const { return columns_; }
  // Hash algorithms listed in index.json that are not checked (not implemented here).
  const std::vector<std::string>& unchecked_hashes() const { return unchecked_hashes_; }

  // Decodes every column of sample i (std::out_of_range unless 0 <= i < size()). Image columns
  // (jpeg, png, pil, lists of them) and pkl throw; read the others with the overload below.
  MDSSample get(int64_t i) const;
  // Decodes only `columns` (each must exist: the error lists the available ones).
  MDSSample get(int64_t i, const std::vector<std::string>& columns) const;
  // "<shard file>: sample <j in shard> (dataset index <i>)", for messages about sample i.
  std::string describe_sample(int64_t i) const;

 private:
  struct Shard;   // one index.json entry
  struct Loaded;  // a shard's bytes: memory-mapped, or decompressed into memory
  struct Cache;
  std::shared_ptr<const Loaded> load(int64_t k) const;
  int64_t shard_of(int64_t i) const;
  std::shared_ptr<const Loaded> open_shard(int64_t k, bool verify_hashes) const;

  std::filesystem::path dir_;
  MDSReaderOptions options_;
  std::vector<MDSColumn> columns_;
  std::vector<Shard> shards_;
  std::vector<int64_t> shard_starts_;  // samples before shard k; back() = total
  std::vector<std::string> unchecked_hashes_;
  std::unique_ptr<Cache> cache_;
};

// Writes an MDS directory byte-for-byte as streaming's MDSWriter does for the same samples and
// settings: columns sorted by name, a new shard when size_limit < shard size + len(sample) + 4,
// index.json with sorted keys. `dir` must be absent or empty. Shards and index.json are replaced
// atomically. Values per encoding:
//   any encoding       std::string: the encoded bytes as they are (as streaming passes `bytes`)
//   str, bytes, json   std::string (json: the JSON text)
//   int, str_int       int64_t;  str_float: double (stored as Python's repr)
//   uint8..int64       int64_t (range-checked), or a one-element tensor of that dtype
//   float16/32/64      double or int64_t, or a one-element tensor of that dtype
//   ndarray[:d[:s]]    a tensor of a dtype numpy shares (not bool/bfloat16), shape matching
// Errors: std::invalid_argument for bad settings or values (naming the column); std::runtime_error
// for I/O, a non-empty `dir`, or zstd in a build without libzstd. The destructor writes nothing:
// call finish().
class MDSWriter {
 public:
  // columns: (name, encoding); size_limit: bytes, 0 for one shard, below 2^32; compression: "",
  // "zstd" or "zstd:<level 1..22>"; hashes: sorted, each one of md5, sha1, xxh32, xxh64.
  MDSWriter(const std::filesystem::path& dir,
            std::vector<std::pair<std::string, std::string>> columns,
            int64_t size_limit = int64_t{1} << 28, std::string compression = "",
            std::vector<std::string> hashes = {});
  ~MDSWriter();

  // Columns the writer does not know are ignored, as streaming does. Like streaming, a first
  // sample larger than size_limit is preceded by an empty shard.
  void write(const MDSSample& sample);
  // Writes the last shard and index.json. The writer takes no more samples afterwards.
  void finish();

  // Encodes one sample as it is stored in a shard (sizes of variable columns, then the data).
  std::string encode_sample(const MDSSample& sample) const;

 private:
  void flush_shard();

  std::filesystem::path dir_;
  std::vector<MDSColumn> columns_;  // sorted by name
  int64_t size_limit_;
  std::string compression_;
  int zstd_level_ = 0;
  std::vector<std::string> hashes_;
  std::string config_;  // the shard config JSON
  std::vector<std::string> pending_;
  int64_t pending_bytes_ = 0;
  std::vector<std::string> shard_entries_;  // index.json shard objects, dumped
  bool finished_ = false;
};

// Writes root/index.json listing the shards of root/<subdir>/index.json for each subdir in
// order, their basenames prefixed with "<subdir>/", as streaming's merge_index (the official
// preparation's merged index; same bytes for single-component subdirs).
void merge_index(const std::filesystem::path& root, const std::vector<std::string>& subdirs);

// Python's repr() of a float ("0.1", "1e+16", "1e-05", "-0.0", "inf", "nan"): str_float text.
std::string python_float_repr(double value);

}  // namespace microdit::data
