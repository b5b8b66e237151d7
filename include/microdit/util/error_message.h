// The message of a caught exception, for a user: one line. LibTorch's c10::Error (every
// TORCH_CHECK and every ATen argument check) appends a C++ backtrace, and several of its messages
// and ours (a state dict's list of problems) span lines; a tool prints the first line only, unless
// TORCH_SHOW_CPP_STACKTRACES=1 (PyTorch's switch for the same) asks for the whole text.
#pragma once
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

namespace microdit::util {

std::string error_message(const std::exception& e);

// The first line of `text`, trailing blanks dropped, control bytes and malformed UTF-8 (input a
// message may quote) written as \xNN, at most `max_bytes` of it (then "...").
inline constexpr size_t kMaxMessageBytes = 500;
std::string one_line(std::string_view text, size_t max_bytes = kMaxMessageBytes);

// What `f` returns; an exception from it becomes std::runtime_error "<where>: <its message>", so
// that the file or config key it came from leads the line.
template <class F>
auto in_context(std::string_view where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(where) + ": " + error_message(e));
  }
}

}  // namespace microdit::util
