// Checks that an input a parser refuses gives one line naming it: what a tool prints.
#pragma once
#include <gtest/gtest.h>

#include <exception>
#include <initializer_list>
#include <string>
#include <string_view>

#include "test_support.h"

namespace microdit::test {

// throws_with, and the message is one line.
template <class E = std::runtime_error, class F,
          class Pieces = std::initializer_list<std::string_view>>
testing::AssertionResult throws_one_line(F&& f, std::string_view prefix, const Pieces& pieces) {
  std::string message;
  testing::AssertionResult result = throws_with<E>(
      [&] {
        try {
          f();
        } catch (const std::exception& e) {
          message = e.what();
          throw;
        }
      },
      prefix, pieces);
  if (result && message.find('\n') != std::string::npos) {
    return testing::AssertionFailure() << "message spans several lines: " << message;
  }
  return result;
}

}  // namespace microdit::test
