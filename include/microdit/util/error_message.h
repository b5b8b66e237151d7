// The message of a caught exception, for a user: one line. LibTorch's c10::Error (every
// TORCH_CHECK and every ATen argument check) appends a C++ backtrace, and several of its messages
// and ours (a state dict's list of problems) span lines; a tool prints the first line only, unless
// TORCH_SHOW_CPP_STACKTRACES=1 (PyTorch's switch for the same) asks for the whole text.
#pragma once
#include <exception>
#include <string>
#include <string_view>

namespace microdit::util {

std::string error_message(const std::exception& e);

// The first line of `text`, trailing blanks dropped, control bytes and malformed UTF-8 (input a
// message may quote) written as \xNN, at most `max_bytes` of it (then "...").
inline constexpr size_t kMaxMessageBytes = 500;
std::string one_line(std::string_view text, size_t max_bytes = kMaxMessageBytes);

}  // namespace microdit::util
