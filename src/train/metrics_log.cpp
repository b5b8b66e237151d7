#include "microdit/train/metrics_log.h"

#include <c10/util/StringUtil.h>

#include <charconv>
#include <cmath>
#include <string_view>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"

namespace microdit::train {

MetricsLog::MetricsLog(const std::filesystem::path& path) : path_(path) {
  if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw std::runtime_error(c10::str("cannot open metrics log ", path_.string()));
}

void MetricsLog::write(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  io::Json record = io::Json::object();
  record["step"] = step;
  for (const auto& [name, value] : values) {
    if (record.contains(name)) {
      throw std::invalid_argument(
          c10::str("metrics log: value name \"", name, "\" is repeated or reserved"));
    }
    record[name] = std::isfinite(value) ? io::Json(value) : io::Json(nullptr);
  }
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error(c10::str("cannot write metrics log ", path_.string()));
}

void keep_records_through(const std::filesystem::path& path, int64_t last_step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  // Every record starts with its step (write() puts it first).
  constexpr std::string_view kPrefix = "{\"step\":";
  std::string kept, line;
  while (std::getline(in, line)) {
    if (!line.starts_with(kPrefix) || !line.ends_with('}')) continue;  // cut short by a crash
    int64_t step = 0;
    const char* first = line.data() + kPrefix.size();
    const auto [end, ec] = std::from_chars(first, line.data() + line.size(), step);
    if (ec == std::errc() && (*end == ',' || *end == '}') && step <= last_step) kept += line + '\n';
  }
  io::write_file_atomically(path, [&](std::ostream& out) { out << kept; });
}

}  // namespace microdit::train
