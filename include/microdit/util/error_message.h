// The message of a caught exception, for a user. LibTorch's c10::Error (every TORCH_CHECK and
// every ATen argument check) appends a C++ backtrace to its message, tens of lines a user cannot
// act on; it is kept out unless TORCH_SHOW_CPP_STACKTRACES=1, PyTorch's switch for the same.
#pragma once
#include <exception>
#include <string>
#include <string_view>

namespace microdit::util {

// One line (see one_line), or with TORCH_SHOW_CPP_STACKTRACES=1 the message as it is.
std::string error_message(const std::exception& e);

// `text` without trailing white space and with its control characters escaped (\n, \r, \t,
// \xHH): a newline in a name read from a file, or at the end of a library's message, would
// otherwise start a line that is not ours.
std::string one_line(std::string_view text);

}  // namespace microdit::util
