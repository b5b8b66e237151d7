// Strict RFC 8259 JSON parser and compact writer (see json.h).
#include "microdit/io/json.h"

#include <c10/util/StringUtil.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <unordered_set>

#include "microdit/io/read_file.h"
#include "microdit/util/error_message.h"
#include "microdit/util/utf8.h"

namespace microdit::io {

namespace {

constexpr int kMaxDepth = 128;  // serde_json's recursion limit

std::string describe_byte(std::string_view text, std::size_t pos) {
  if (pos >= text.size()) return "end of input";
  const auto c = static_cast<unsigned char>(text[pos]);
  if (c >= 0x20 && c < 0x7f) return c10::str("'", static_cast<char>(c), "'");
  constexpr char kHex[] = "0123456789abcdef";
  return c10::str("byte 0x", kHex[c >> 4], kHex[c & 15]);
}

// Length of the UTF-8 sequence starting at text[pos], or 0 when it is malformed
// (overlong forms, surrogates and code points past U+10FFFF are malformed).
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) {
  const auto byte = [&](std::size_t i) {
    return pos + i < text.size() ? static_cast<unsigned char>(text[pos + i]) : 0u;
  };
  const auto cont = [&](std::size_t i) { return (byte(i) & 0xc0u) == 0x80u; };
  const unsigned c = byte(0);
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    return byte(1) >= lo && byte(1) <= hi && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    return byte(1) >= lo && byte(1) <= hi && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Parser

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  Json parse_document() {
    skip_whitespace();
    Json value = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail("end of input after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail(std::string_view expected) const { fail_at(pos_, expected); }
  [[noreturn]] void fail_at(std::size_t pos, std::string_view expected) const {
    throw std::runtime_error(c10::str("JSON parse error at byte ", pos, ": expected ", expected,
                                      ", got ", describe_byte(text_, pos)));
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_whitespace() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) {
      ++pos_;
    }
  }

  void expect(char c, std::string_view what) {
    if (at_end() || peek() != c) fail(what);
    ++pos_;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail(c10::str("nesting no deeper than ", kMaxDepth));
    switch (peek()) {
      case '{':
        return parse_object(depth);
      case '[':
        return parse_array(depth);
      case '"':
        return Json(parse_string());
      case 't':
        return parse_literal("true", Json(true));
      case 'f':
        return parse_literal("false", Json(false));
      case 'n':
        return parse_literal("null", Json(nullptr));
      default:
        if (peek() == '-' || is_digit(peek())) return parse_number();
        fail("a JSON value");
    }
  }

  Json parse_literal(std::string_view word, Json value) {
    if (text_.substr(pos_, word.size()) != word) fail(c10::str("'", word, "'"));
    pos_ += word.size();
    return value;
  }

  Json parse_object(int depth) {
    ++pos_;  // '{'
    Json::Object members;
    std::unordered_set<std::string> seen;
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return Json(std::move(members));
    }
    while (true) {
      skip_whitespace();
      const std::size_t key_pos = pos_;
      if (peek() != '"') fail("a string key");
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        throw std::runtime_error(
            c10::str("JSON parse error at byte ", key_pos, ": duplicate object key \"", key, "\""));
      }
      skip_whitespace();
      expect(':', "':' after an object key");
      skip_whitespace();
      members.emplace_back(std::move(key), parse_value(depth + 1));
      skip_whitespace();
      if (peek() == '}') break;
      expect(',', "',' or '}' after an object member");
    }
    ++pos_;
    return Json(std::move(members));
  }

  Json parse_array(int depth) {
    ++pos_;  // '['
    Json::Array items;
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return Json(std::move(items));
    }
    while (true) {
      skip_whitespace();
      items.push_back(parse_value(depth + 1));
      skip_whitespace();
      if (peek() == ']') break;
      expect(',', "',' or ']' after an array element");
    }
    ++pos_;
    return Json(std::move(items));
  }

  Json parse_number() {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (is_digit(peek())) {
      while (is_digit(peek())) ++pos_;
    } else {
      fail("a digit");
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!is_digit(peek())) fail("a digit after '.'");
      while (is_digit(peek())) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit(peek())) fail("a digit in the exponent");
      while (is_digit(peek())) ++pos_;
    }
    return make_number(text_.substr(start, pos_ - start), integral);
  }

  Json make_number(std::string_view literal, bool integral) {
    const char* first = literal.data();
    const char* last = first + literal.size();
    double value = 0.0;
    auto [end, ec] = std::from_chars(first, last, value);
    if (ec == std::errc::result_out_of_range) {
      // Overflow is ±infinity, underflow is a signed zero (what strtod returns).
      value = std::strtod(std::string(literal).c_str(), nullptr);
    }
    std::optional<std::int64_t> exact;
    std::int64_t as_int = 0;
    if (integral && std::from_chars(first, last, as_int).ec == std::errc{}) exact = as_int;
    if (!std::isfinite(value)) fail_at(pos_ - literal.size(), "a number within double range");
    return Json::from_number(value, exact);
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (at_end()) fail("'\"' to close the string");
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') break;
      if (c == '\\') {
        parse_escape(out);
      } else if (c < 0x20) {
        fail("an escaped control character");
      } else {
        const std::size_t n = utf8_sequence_length(text_, pos_);
        if (n == 0) fail("valid UTF-8");
        out.append(text_.substr(pos_, n));
        pos_ += n;
      }
    }
    ++pos_;
    return out;
  }

  void parse_escape(std::string& out) {
    ++pos_;  // backslash
    const char c = peek();
    ++pos_;
    switch (c) {
      case '"':
        out += '"';
        return;
      case '\\':
        out += '\\';
        return;
      case '/':
        out += '/';
        return;
      case 'b':
        out += '\b';
        return;
      case 'f':
        out += '\f';
        return;
      case 'n':
        out += '\n';
        return;
      case 'r':
        out += '\r';
        return;
      case 't':
        out += '\t';
        return;
      case 'u':
        util::append_utf8(out, parse_unicode_escape());
        return;
      default:
        fail_at(pos_ - 1, "an escape character (\" \\ / b f n r t u)");
    }
  }

  // After "\u": one code unit, or a surrogate pair spelled as two escapes.
  char32_t parse_unicode_escape() {
    const std::size_t start = pos_ - 2;
    const char32_t unit = parse_hex4();
    if (unit >= 0xdc00 && unit <= 0xdfff) fail_at(start, "a code point, not a lone low surrogate");
    if (unit < 0xd800 || unit > 0xdbff) return unit;
    if (text_.substr(pos_, 2) != "\\u") fail("'\\u' low surrogate after a high surrogate");
    pos_ += 2;
    const char32_t low = parse_hex4();
    if (low < 0xdc00 || low > 0xdfff) fail_at(pos_ - 6, "a low surrogate (\\udc00-\\udfff)");
    return 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
  }

  char32_t parse_hex4() {
    char32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      int digit = -1;
      if (is_digit(c)) digit = c - '0';
      if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
      if (digit < 0) fail("a hex digit in a \\u escape");
      value = value * 16 + static_cast<char32_t>(digit);
      ++pos_;
    }
    return value;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

Json parse_json(std::string_view text) { return JsonParser(text).parse_document(); }

// ---------------------------------------------------------------------------------------------
// Value access

Json Json::from_number(double value, std::optional<std::int64_t> exact) {
  Json json;
  json.value_ = Number{value, exact};
  return json;
}

std::string_view Json::type_name() const {
  switch (type()) {
    case Type::null:
      return "null";
    case Type::boolean:
      return "bool";
    case Type::number:
      return is_integer() ? "integer" : "number";
    case Type::string:
      return "string";
    case Type::array:
      return "array";
    case Type::object:
      return "object";
  }
  return "?";
}

namespace {
[[noreturn]] void wrong_type(std::string_view expected, const Json& got) {
  throw std::runtime_error(c10::str("JSON: expected ", expected, ", got ", got.type_name()));
}
}  // namespace

bool Json::is_integer() const {
  const auto* n = std::get_if<Number>(&value_);
  return n != nullptr && n->exact.has_value();
}

bool Json::as_bool() const {
  if (!is_bool()) wrong_type("bool", *this);
  return std::get<bool>(value_);
}

double Json::as_double() const {
  if (!is_number()) wrong_type("number", *this);
  return std::get<Number>(value_).value;
}

std::int64_t Json::as_int() const {
  if (!is_integer()) {
    if (is_number()) {
      throw std::runtime_error(
          c10::str("JSON: expected an integer in int64 range, got number ", as_double()));
    }
    wrong_type("integer", *this);
  }
  return *std::get<Number>(value_).exact;
}

const std::string& Json::as_string() const {
  if (!is_string()) wrong_type("string", *this);
  return std::get<std::string>(value_);
}

const Json::Array& Json::as_array() const {
  if (!is_array()) wrong_type("array", *this);
  return std::get<Array>(value_);
}

Json::Array& Json::as_array() {
  if (!is_array()) wrong_type("array", *this);
  return std::get<Array>(value_);
}

const Json::Object& Json::as_object() const {
  if (!is_object()) wrong_type("object", *this);
  return std::get<Object>(value_);
}

Json::Object& Json::as_object() {
  if (!is_object()) wrong_type("object", *this);
  return std::get<Object>(value_);
}

const Json* Json::find(std::string_view key) const {
  for (const auto& [name, value] : as_object()) {
    if (name == key) return &value;
  }
  return nullptr;
}

const Json& Json::at(std::string_view key) const {
  const Json* value = find(key);
  if (value == nullptr) throw std::runtime_error(c10::str("JSON: missing key \"", key, "\""));
  return *value;
}

const Json& Json::at(std::size_t index) const {
  const Array& items = as_array();
  if (index >= items.size()) {
    throw std::runtime_error(
        c10::str("JSON: index ", index, " out of range for array of ", items.size()));
  }
  return items[index];
}

std::size_t Json::size() const {
  if (is_array()) return as_array().size();
  if (is_object()) return as_object().size();
  wrong_type("array or object", *this);
}

Json& Json::set(std::string key, Json value) {
  Object& members = as_object();
  for (auto& [name, existing] : members) {
    if (name == key) return existing = std::move(value);
  }
  return members.emplace_back(std::move(key), std::move(value)).second;
}

void Json::push_back(Json value) { as_array().push_back(std::move(value)); }

bool operator==(const Json& a, const Json& b) { return a.value_ == b.value_; }

// ---------------------------------------------------------------------------------------------
// Writer

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

namespace {
void append_number(std::string& out, double value, std::optional<std::int64_t> exact) {
  if (exact) {
    out += std::to_string(*exact);
    return;
  }
  if (!std::isfinite(value)) {
    throw std::runtime_error(c10::str("JSON: cannot write non-finite number ", value));
  }
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
  out += text;
  // Keep a double a double when read back: "2" would parse as an integer.
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}
}  // namespace

void Json::dump_to(std::string& out) const {
  switch (type()) {
    case Type::null:
      out += "null";
      return;
    case Type::boolean:
      out += std::get<bool>(value_) ? "true" : "false";
      return;
    case Type::number: {
      const Number& n = std::get<Number>(value_);
      append_number(out, n.value, n.exact);
      return;
    }
    case Type::string:
      append_json_string(out, std::get<std::string>(value_));
      return;
    case Type::array: {
      out += '[';
      const Array& items = std::get<Array>(value_);
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ',';
        items[i].dump_to(out);
      }
      out += ']';
      return;
    }
    case Type::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : std::get<Object>(value_)) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, key);
        out += ':';
        value.dump_to(out);
      }
      out += '}';
      return;
    }
  }
}

std::string Json::dump() const {
  std::string out;
  dump_to(out);
  return out;
}

Json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  try {
    return parse_json(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(path.string() + ": " + util::error_message(e));
  }
}

}  // namespace microdit::io
