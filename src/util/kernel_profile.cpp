#include "microdit/util/kernel_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"

namespace microdit::util {

std::vector<KernelTotal> profile_kernels(const std::function<void()>& work, bool cuda) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  work();
  auto result = prof::disableProfiler();

  std::map<std::string, KernelTotal> by_name;
  for (const auto& event : result->events()) {
    const bool on_gpu = event.deviceType() == c10::DeviceType::CUDA;
    if (on_gpu != cuda || event.isHiddenEvent()) continue;
    auto& total = by_name[event.name()];
    total.name = event.name();
    total.calls += 1;
    total.total_ms += static_cast<double>(event.durationNs()) * 1e-6;
  }
  std::vector<KernelTotal> totals;
  for (auto& [name, total] : by_name) totals.push_back(std::move(total));
  std::sort(totals.begin(), totals.end(),
            [](const KernelTotal& a, const KernelTotal& b) { return a.total_ms > b.total_ms; });
  return totals;
}

void print_kernel_totals(std::ostream& out, const std::vector<KernelTotal>& totals, int64_t top,
                         double per, std::size_t max_name) {
  double all = 0;
  for (const auto& t : totals) all += t.total_ms;
  io::Json head = io::Json::object();
  head["profile"] = "all";
  head["kernels"] = static_cast<int64_t>(totals.size());
  head["ms"] = all / per;
  out << head.dump() << "\n";
  for (int64_t i = 0; i < top && i < static_cast<int64_t>(totals.size()); ++i) {
    const auto& t = totals[i];
    io::Json line = io::Json::object();
    line["profile"] = t.name.substr(0, max_name);
    line["calls"] = static_cast<double>(t.calls) / per;
    line["ms"] = t.total_ms / per;
    line["share"] = all > 0 ? t.total_ms / all : 0.0;
    out << line.dump() << "\n";
  }
}

}  // namespace microdit::util
