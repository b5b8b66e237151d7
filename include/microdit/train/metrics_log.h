// metrics.jsonl: one JSON object per line, {"step":120,"loss":0.41,"lr":0.00024,...}, appended
// and flushed line by line so a crashed run keeps every record written before the crash.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace microdit::train {

class MetricsLog {
 public:
  // Appends to `path` (creating it and its parent directory when missing).
  explicit MetricsLog(const std::filesystem::path& path);

  // Writes {"step": step, name: value, ...} in the given order; NaN and infinities become null.
  // Throws std::invalid_argument for a duplicate name or the reserved name "step".
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& values);

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace microdit::train
