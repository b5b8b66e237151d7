#include "microdit/train/tensorboard.h"

#include <c10/util/StringUtil.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <stdexcept>

#include "microdit/io/png.h"
#include "microdit/io/read_file.h"

namespace microdit::train {
namespace {

// ---- protobuf wire format (proto3): key = (field << 3) | wire type ----
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_key(std::string& out, uint32_t field, WireType type) {
  put_varint(out, (field << 3) | type);
}

template <class T>
void put_fixed(std::string& out, uint32_t field, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  put_key(out, field, sizeof(T) == 8 ? kFixed64 : kFixed32);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian host (x86-64, aarch64)
  out.append(bytes, sizeof(T));
}

void put_int(std::string& out, uint32_t field, int64_t value) {
  if (value == 0) return;  // proto3 leaves default values out
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(value));  // negative int64: ten bytes, two's complement
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Event{wall_time = 1, step = 2, summary = 5 {value = 1 (repeated)}}
std::string summary_event(int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);
  std::string event;
  put_fixed(event, 1, wall_time());
  put_int(event, 2, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string hostname() {
  std::array<char, 256> name{};
  if (gethostname(name.data(), name.size() - 1) != 0 || name[0] == '\0') return "localhost";
  return name.data();
}

std::filesystem::path event_file_path(const std::filesystem::path& log_dir) {
  static std::atomic<int> counter{0};
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(seconds));
  return log_dir /
         c10::str("events.out.tfevents.", stamp, ".", hostname(), ".", getpid(), ".", counter++);
}

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

uint64_t get_le(const char* bytes, int count) {
  uint64_t value = 0;
  for (int i = 0; i < count; ++i) value |= uint64_t{static_cast<uint8_t>(bytes[i])} << (8 * i);
  return value;
}

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

}  // namespace

uint32_t crc32c(const void* data, std::size_t size) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = table[(c ^ bytes[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, std::size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

EventWriter::EventWriter(const std::filesystem::path& log_dir, std::optional<int64_t> purge_step) {
  std::filesystem::create_directories(log_dir);
  path_ = event_file_path(log_dir);
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw std::runtime_error(c10::str("cannot open event file ", path_.string()));
  std::string event;  // Event{wall_time = 1, file_version = 3}
  put_fixed(event, 1, wall_time());
  put_bytes(event, 3, "brain.Event:2");
  write_record(event);
  if (purge_step) {
    // Event{wall_time = 1, step = 2, session_log = 7 {status = 1 (START = 1)}}, as PyTorch's
    // SummaryWriter(purge_step=...) writes it: TensorBoard drops the earlier files' events from
    // this step on, which a resumed run logs again.
    std::string session_log;
    put_int(session_log, 1, 1);
    std::string start;
    put_fixed(start, 1, wall_time());
    put_int(start, 2, *purge_step);
    put_bytes(start, 7, session_log);
    write_record(start);
  }
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  std::string summary_value;  // Summary.Value{tag = 1, simple_value = 2 (float)}
  put_bytes(summary_value, 1, tag);
  put_fixed(summary_value, 2, static_cast<float>(value));
  write_record(summary_event(step, summary_value));
}

void EventWriter::add_image(const std::string& tag, const at::Tensor& image, int64_t step) {
  const std::string png = io::encode_png(image);  // validates dtype and shape
  std::string encoded;  // Summary.Image{height = 1, width = 2, colorspace = 3, encoded = 4}
  put_int(encoded, 1, image.size(0));
  put_int(encoded, 2, image.size(1));
  put_int(encoded, 3, image.size(2));
  put_bytes(encoded, 4, png);
  std::string summary_value;  // Summary.Value{tag = 1, image = 4}
  put_bytes(summary_value, 1, tag);
  put_bytes(summary_value, 4, encoded);
  write_record(summary_event(step, summary_value));
}

void EventWriter::flush() {
  out_.flush();
  if (!out_) throw std::runtime_error(c10::str("cannot write event file ", path_.string()));
}

void EventWriter::write_record(const std::string& event) {
  std::string record;
  record.reserve(event.size() + 16);
  put_le(record, event.size(), 8);
  put_le(record, masked_crc32c(record.data(), 8), 4);
  record += event;
  put_le(record, masked_crc32c(event.data(), event.size()), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  flush();
}

std::vector<std::string> read_tfevents_records(const std::filesystem::path& path) {
  const std::string bytes = io::read_file(path);
  std::vector<std::string> records;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const std::size_t index = records.size();
    auto fail = [&](const std::string& what) {
      throw std::runtime_error(c10::str("event file ", path.string(), ": record ", index,
                                        " (at byte ", pos, ") ", what));
    };
    if (bytes.size() - pos < 12) fail("is truncated in its header");
    const uint64_t length = get_le(bytes.data() + pos, 8);
    if (get_le(bytes.data() + pos + 8, 4) != masked_crc32c(bytes.data() + pos, 8)) {
      fail("has a wrong length CRC");
    }
    if (length > bytes.size() - pos - 12 || bytes.size() - pos - 12 - length < 4) {
      fail(c10::str("is truncated: ", length, " data bytes announced"));
    }
    const char* data = bytes.data() + pos + 12;
    if (get_le(data + length, 4) != masked_crc32c(data, length)) fail("has a wrong data CRC");
    records.emplace_back(data, length);
    pos += 12 + length + 4;
  }
  return records;
}

}  // namespace microdit::train
