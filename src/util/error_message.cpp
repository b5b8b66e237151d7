#include "microdit/util/error_message.h"

#include <c10/util/Exception.h>

#include <cctype>
#include <cstdlib>
#include <string_view>

namespace microdit::util {
namespace {
bool show_cpp_stacktraces() {
  const char* value = std::getenv("TORCH_SHOW_CPP_STACKTRACES");
  return value != nullptr && std::string_view(value) == "1";
}
}  // namespace

std::string error_message(const std::exception& e) {
  if (show_cpp_stacktraces()) return e.what();
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return one_line(error->what_without_backtrace());
  }
  return one_line(e.what());
}

std::string one_line(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += {'\\', 'x', kHex[byte >> 4], kHex[byte & 15]};
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace microdit::util
