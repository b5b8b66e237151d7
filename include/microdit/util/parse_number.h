// Numbers from text a user or a file gave (flags, environment variables, checkpoint metadata,
// file names): the whole text must be the number and lie in [min, max], else one line naming
// `what` and the range.
#pragma once
#include <cstdint>
#include <limits>
#include <string_view>

namespace microdit::util {

std::int64_t parse_int(std::string_view text, std::string_view what,
                       std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t max = std::numeric_limits<std::int64_t>::max());
// The full unsigned range (seeds): "-1" is refused, not wrapped.
std::uint64_t parse_uint64(std::string_view text, std::string_view what);
// Finite numbers only.
double parse_double(std::string_view text, std::string_view what,
                    double min = std::numeric_limits<double>::lowest(),
                    double max = std::numeric_limits<double>::max());

}  // namespace microdit::util
