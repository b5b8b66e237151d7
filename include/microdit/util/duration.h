// Durations for progress lines: "42s", "3m07s", "5h12m".
#pragma once
#include <string>

namespace microdit::util {

std::string format_duration(double seconds);

}  // namespace microdit::util
