// What every harness checks besides the sanitizers: a parser given any bytes either returns or
// throws a std::exception whose message is one line naming the input. Anything else (another
// exception type, a message over several lines or without the name) aborts, which libFuzzer and
// the replay both report as a finding. MICRODIT_FUZZ_VERBOSE=1 prints each refusal.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "microdit/util/error_message.h"

namespace microdit::fuzz {

inline std::string_view bytes_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`, holding its error message to the rule above (an empty `name`: one line only).
template <class Parse>
void expect_clean_error(std::string_view name, Parse&& parse) {
  try {
    parse();
  } catch (const std::exception& e) {
    const std::string message = util::error_message(e);
    static const bool verbose = std::getenv("MICRODIT_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "refused: %s\n", message.c_str());
    const bool one_line = message.find('\n') == std::string::npos;
    if (!one_line || (!name.empty() && message.find(name) == std::string::npos)) {
      std::fprintf(stderr, "error message %s: %s\n",
                   one_line ? "does not name the input" : "spans several lines", message.c_str());
      std::abort();
    }
  }
}

}  // namespace microdit::fuzz
