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

// A newline in a name read from a file, a library's trailing newline: still one line, which
// starts with the file's name.
TEST(ErrorMessage, OneLineWhateverTheText) {
  unsetenv("TORCH_SHOW_CPP_STACKTRACES");
  EXPECT_EQ(error_message(std::runtime_error("x.safetensors: tensor \"b\tc\x01\na\" is bad\n")),
            "x.safetensors: tensor \"b\\x09c\\x01");
  EXPECT_EQ(microdit::util::one_line("caf\xc3\xa9\r\nx \n"), "caf\xc3\xa9");
}
}  // namespace

namespace {
using microdit::util::one_line;

TEST(ErrorMessage, FirstLineOnly) {
  unsetenv("TORCH_SHOW_CPP_STACKTRACES");
  EXPECT_EQ(error_message(std::runtime_error("load_state_dict: 2 problems, the first: a\n  a\n  b")),
            "load_state_dict: 2 problems, the first: a");
  std::string libtorch;
  try {
    TORCH_CHECK(false, "shape mismatch\nsecond line of LibTorch's text");
  } catch (const std::exception& e) {
    libtorch = error_message(e);
  }
  EXPECT_EQ(libtorch, "shape mismatch");
}

TEST(ErrorMessage, InputBytesAreNotEchoedRaw) {
  EXPECT_EQ(one_line(std::string("key \x1b[31mred\x7f\0x", 15)), "key \\x1b[31mred\\x7f\\x00x");
  EXPECT_EQ(one_line("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");  // UTF-8 kept
  EXPECT_EQ(one_line("bad \xc3 \xed\xa0\x80 \xc0\xaf"), "bad \\xc3 \\xed\\xa0\\x80 \\xc0\\xaf");
  EXPECT_EQ(one_line("trailing \r\n"), "trailing");
  const std::string long_name(100000, 'k');
  const std::string shown = one_line("unknown key " + long_name);
  EXPECT_LT(shown.size(), 600u);
  EXPECT_TRUE(shown.ends_with("...")) << shown;
}
}  // namespace
