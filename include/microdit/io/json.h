// A small JSON value (RFC 8259) for file headers and metadata: strict parser, compact writer.
// Objects keep insertion order, so a dumped header lists keys in the order they were added.
#pragma once
#include <filesystem>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace microdit::io {

class Json {
 public:
  using Array = std::vector<Json>;
  using Member = std::pair<std::string, Json>;
  using Object = std::vector<Member>;  // insertion order, keys unique
  enum class Type { null, boolean, number, string, array, object };

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool value) : value_(value) {}
  Json(double value) : value_(Number{value, std::nullopt}) {}
  template <class T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) Json(T value)
      : value_(integer_number(value)) {}
  Json(std::string value) : value_(std::move(value)) {}
  Json(std::string_view value) : value_(std::string(value)) {}
  Json(const char* value) : value_(std::string(value)) {}
  Json(Array value) : value_(std::move(value)) {}
  Json(Object value) : value_(std::move(value)) {}

  static Json array() { return Json(Array{}); }
  static Json object() { return Json(Object{}); }

  Type type() const { return static_cast<Type>(value_.index()); }
  std::string_view type_name() const;
  bool is_null() const { return type() == Type::null; }
  bool is_bool() const { return type() == Type::boolean; }
  bool is_number() const { return type() == Type::number; }
  // True for numbers written without fraction or exponent that fit in int64.
  bool is_integer() const;
  bool is_string() const { return type() == Type::string; }
  bool is_array() const { return type() == Type::array; }
  bool is_object() const { return type() == Type::object; }

  bool as_bool() const;
  double as_double() const;
  std::int64_t as_int() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  // Object access: at() throws naming the key when it is missing, find() returns nullptr.
  const Json& at(std::string_view key) const;
  const Json* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Array access, bounds-checked.
  const Json& at(std::size_t index) const;
  // Number of array elements or object members.
  std::size_t size() const;

  // Object: replaces the value of an existing key, else appends the member.
  Json& set(std::string key, Json value);
  // Array: appends.
  void push_back(Json value);

  // Compact text, no whitespace; throws for NaN or infinite numbers.
  std::string dump() const;

  friend bool operator==(const Json& a, const Json& b);

 private:
  struct Number {
    double value = 0.0;
    std::optional<std::int64_t> exact;  // set when the number is an integer that fits int64
    friend bool operator==(const Number&, const Number&) = default;
  };

  template <class T>
  static Number integer_number(T value) {
    if constexpr (std::is_unsigned_v<T>) {
      if (value > static_cast<std::make_unsigned_t<std::int64_t>>(INT64_MAX)) {
        return Number{static_cast<double>(value), std::nullopt};
      }
    }
    return Number{static_cast<double>(value), static_cast<std::int64_t>(value)};
  }

  static Json from_number(double value, std::optional<std::int64_t> exact);
  void dump_to(std::string& out) const;

  // Alternative order matches Type.
  std::variant<std::nullptr_t, bool, Number, std::string, Array, Object> value_;

  friend class JsonParser;
};

// Parses exactly one JSON value surrounded by optional whitespace. Rejects trailing text,
// duplicate object keys, invalid UTF-8 and lone surrogates; errors name the byte offset.
Json parse_json(std::string_view text);
// parse_json of a file's text; errors start with the file path.
Json read_json_file(const std::filesystem::path& path);

// Appends `text` as a JSON string literal (quotes included), escaping as serde_json does.
void append_json_string(std::string& out, std::string_view text);

}  // namespace microdit::io
