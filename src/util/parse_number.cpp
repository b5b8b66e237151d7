#include "microdit/util/parse_number.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace microdit::util {
namespace {

// Quoted, and cut short, so that a hostile value cannot spread over lines or screens.
std::string shown(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 40)) out += (c >= ' ' && c <= '~') ? c : '?';
  return "'" + out + (text.size() > 40 ? "...'" : "'");
}

template <class T>
bool parse_whole(std::string_view text, T& out) {
  if (text.size() > 1 && text.front() == '+' && text[1] != '-') text.remove_prefix(1);
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

std::string range(auto min, auto max) {
  if (min == std::numeric_limits<decltype(min)>::lowest() &&
      max == std::numeric_limits<decltype(max)>::max()) {
    return "";
  }
  if (max == std::numeric_limits<decltype(max)>::max()) return fmt::format(" >= {}", min);
  return fmt::format(" in [{}, {}]", min, max);
}

}  // namespace

std::int64_t parse_int(std::string_view text, std::string_view what, std::int64_t min,
                       std::int64_t max) {
  std::int64_t value = 0;
  if (!parse_whole(text, value) || value < min || value > max) {
    throw std::invalid_argument(
        fmt::format("{} is {}, expected an integer{}", what, shown(text), range(min, max)));
  }
  return value;
}

std::uint64_t parse_uint64(std::string_view text, std::string_view what) {
  std::uint64_t value = 0;
  if (!parse_whole(text, value)) {
    throw std::invalid_argument(fmt::format("{} is {}, expected an integer in [0, {}]", what,
                                            shown(text),
                                            std::numeric_limits<std::uint64_t>::max()));
  }
  return value;
}

double parse_double(std::string_view text, std::string_view what, double min, double max) {
  double value = 0.0;
  if (!parse_whole(text, value) || !std::isfinite(value) || value < min || value > max) {
    throw std::invalid_argument(
        fmt::format("{} is {}, expected a finite number{}", what, shown(text), range(min, max)));
  }
  return value;
}

}  // namespace microdit::util
