// Shared test helpers: the official reference set and small model configs.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

#include "microdit/model/config.h"
#include "microdit/parity/reference_check.h"

namespace microdit::test {

inline std::filesystem::path reference_dir() { return MICRODIT_REFERENCE_DIR; }

// Loaded once per test binary: config.json and cases.safetensors of the official tiny set.
const parity::ReferenceSet& reference_set();

// A small config with every feature on: mixer of another width, MoE in backbone and mixer.
model::DiTConfig small_config();

// Removes a file or directory tree (no error if missing). Not std::filesystem::remove_all: the
// CUDA build of libtorch.so (PyTorch 2.11) exports a broken copy of it that the tests would bind
// to and crash in (seen on the GPU machine, 2026-11-26).
void remove_tree(const std::filesystem::path& path);

// Passes when `f` throws an E (std::runtime_error unless given) whose message starts with
// `prefix` and contains every piece.
template <class E = std::runtime_error, class F,
          class Pieces = std::initializer_list<std::string_view>>
testing::AssertionResult throws_with(F&& f, std::string_view prefix, const Pieces& pieces) {
  try {
    f();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (dynamic_cast<const E*>(&e) == nullptr) {
      return testing::AssertionFailure() << "threw another exception type: " << message;
    }
    if (!message.starts_with(prefix)) {
      return testing::AssertionFailure()
             << "message \"" << message << "\" does not start with \"" << prefix << "\"";
    }
    for (std::string_view piece : pieces) {
      if (message.find(piece) == std::string::npos) {
        return testing::AssertionFailure()
               << "message \"" << message << "\" lacks \"" << piece << "\"";
      }
    }
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "did not throw";
}

}  // namespace microdit::test
