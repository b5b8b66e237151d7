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

// For a run resumed from the checkpoint of step `last_step`: rewrites `path` (atomically) with only
// the records of steps up to `last_step`, so that the steps the run logs again appear once. A
// last line cut short by a crash goes too. Nothing happens when the file does not exist.
void keep_records_through(const std::filesystem::path& path, int64_t last_step);

}  // namespace microdit::train
