// util::error_message: what a tool prints for a caught exception.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "microdit/util/error_message.h"

namespace {
using microdit::util::error_message;

std::string message_of_failed_check() {
  try {
    TORCH_CHECK(false, "a captured step needs CUDA inputs");
  } catch (const std::exception& e) {  // caught as the tools catch it
    return error_message(e);
  }
  return "";
}

TEST(ErrorMessage, LibTorchCheckWithoutBacktrace) {
  unsetenv("TORCH_SHOW_CPP_STACKTRACES");
  EXPECT_EQ(message_of_failed_check(), "a captured step needs CUDA inputs");
}

TEST(ErrorMessage, BacktraceOnRequest) {
  setenv("TORCH_SHOW_CPP_STACKTRACES", "1", 1);
  const std::string message = message_of_failed_check();
  unsetenv("TORCH_SHOW_CPP_STACKTRACES");
  EXPECT_EQ(message.rfind("a captured step needs CUDA inputs", 0), 0u) << message;
  EXPECT_NE(message.find("Exception raised from"), std::string::npos) << message;
}

TEST(ErrorMessage, OtherExceptionsAsTheyAre) {
  EXPECT_EQ(error_message(std::runtime_error("x.safetensors: truncated header")),
            "x.safetensors: truncated header");
}

// A newline in a name read from a file, a library's trailing newline: still one line.
TEST(ErrorMessage, OneLineWhateverTheText) {
  unsetenv("TORCH_SHOW_CPP_STACKTRACES");
  EXPECT_EQ(error_message(std::runtime_error("x.safetensors: tensor \"a\nb\tc\x01\" is bad\n")),
            "x.safetensors: tensor \"a\\nb\\tc\\x01\" is bad");
  EXPECT_EQ(microdit::util::one_line("caf\xc3\xa9\r\nx \n"), "caf\xc3\xa9\\r\\nx");
}
}  // namespace
