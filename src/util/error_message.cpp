#include "microdit/util/error_message.h"

#include <c10/util/Exception.h>

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
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    if (!show_cpp_stacktraces()) return error->what_without_backtrace();
  }
  return e.what();
}

}  // namespace microdit::util
