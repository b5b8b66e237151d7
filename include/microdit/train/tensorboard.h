// TensorBoard event files (tfevents) written without TensorFlow or protobuf: each record is
// [uint64 length][masked CRC32C of length][Event proto][masked CRC32C of data], little-endian,
// with the Event protos (scalars as simple_value, images as PNG) encoded by hand. Our own code:
// TensorBoard's writers are Python (or TensorFlow's C++, not packaged), and the three protobuf
// messages written here take a few dozen lines, where protobuf would add a compiler step.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace microdit::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), init and final XOR 0xFFFFFFFF.
uint32_t crc32c(const void* data, std::size_t size);
// TensorFlow's mask: ((crc >> 15) | (crc << 17)) + 0xA282EAD8.
uint32_t masked_crc32c(const void* data, std::size_t size);

// Appends events to <log_dir>/events.out.tfevents.<10-digit unix time>.<hostname>.<pid>.<n>,
// n counting writers in this process from 0 (as TensorBoard's Python writer names them). The
// first record is the file_version "brain.Event:2" event; every add is flushed to the file.
// A resumed run gives `purge_step`, the first step it logs again: TensorBoard then discards what
// earlier event files logged from that step on (a SessionLog START event, PyTorch's purge_step).
class EventWriter {
 public:
  explicit EventWriter(const std::filesystem::path& log_dir,
                       std::optional<int64_t> purge_step = std::nullopt);

  void add_scalar(const std::string& tag, double value, int64_t step);
  // image: uint8 (H, W, C), C = 1, 2, 3 or 4; stored as PNG.
  void add_image(const std::string& tag, const at::Tensor& image, int64_t step);
  void flush();

  const std::filesystem::path& path() const { return path_; }

 private:
  void write_record(const std::string& event);

  std::filesystem::path path_;
  std::ofstream out_;
};

// Every record's data (serialized Event protos) in file order. Throws std::runtime_error naming
// the file and the record index when a length or data CRC does not match or a record is
// truncated.
std::vector<std::string> read_tfevents_records(const std::filesystem::path& path);

}  // namespace microdit::train
