// UTF-8 encoding of one code point, shared by the JSON parser and the text cleaner.
#pragma once
#include <string>

namespace microdit::util {

void append_utf8(std::string& out, char32_t code_point);

}  // namespace microdit::util
