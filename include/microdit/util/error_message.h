// The message of a caught exception, for a user. LibTorch's c10::Error (every TORCH_CHECK and
// every ATen argument check) appends a C++ backtrace to its message, tens of lines a user cannot
// act on; it is kept out unless TORCH_SHOW_CPP_STACKTRACES=1, PyTorch's switch for the same.
#pragma once
#include <exception>
#include <string>

namespace microdit::util {

std::string error_message(const std::exception& e);

}  // namespace microdit::util
