#include "microdit/train/metrics_log.h"

#include <c10/util/StringUtil.h>

#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

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

}  // namespace microdit::train
