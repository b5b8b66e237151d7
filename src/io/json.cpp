// nlohmann's parser with the checks our readers rely on (see json.h).
#include "microdit/io/json.h"

#include <c10/util/StringUtil.h>

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "microdit/io/read_file.h"

namespace microdit::io {

namespace {

constexpr std::size_t kMaxDepth = 128;  // serde_json's recursion limit, as Python safetensors

// Builds the document from nlohmann's SAX events. nlohmann's own DOM builder finds each new key
// by a linear search of an ordered_json object (18 s for CLIP's 49,408-token vocab.json) and
// keeps the last of duplicate keys; this one appends members and rejects a repeated key.
class StrictBuilder final : public nlohmann::json_sax<Json> {
 public:
  StrictBuilder(Json& root, std::string_view what) : root_(root), what_(what) {}

  bool null() override { return add(nullptr); }
  bool boolean(bool value) override { return add(value); }
  bool number_integer(number_integer_t value) override { return add(value); }
  bool number_unsigned(number_unsigned_t value) override { return add(value); }
  bool number_float(number_float_t value, const string_t&) override { return add(value); }
  bool string(string_t& value) override { return add(std::move(value)); }
  bool binary(binary_t&) override { return false; }  // JSON text has no binary values

  bool start_object(std::size_t) override { return open(Json::object()); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& key) override {
    if (!keys_.back().insert(key).second) {
      fail(c10::str(": duplicate object key \"", key, "\""));
    }
    // ordered_map is a std::vector of members; appending skips its linear search for the key.
    auto& members = open_.back()->get_ref<Json::object_t&>();
    members.Container::emplace_back(std::move(key), nullptr);
    member_ = &members.back().second;
    return true;
  }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& error) override {
    // nlohmann counts bytes read, so the offending byte is the last one read.
    fail(c10::str(" at byte ", position > 0 ? position - 1 : 0, ": ", describe(error.what())));
  }

 private:
  [[noreturn]] void fail(std::string_view problem) const {
    throw std::runtime_error(c10::str(what_, ": invalid JSON", problem));
  }

  // Drops nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 5: " tag and
  // the "last read" token, which may hold the very bytes that are not valid UTF-8.
  static std::string describe(std::string message) {
    if (const auto column = message.find(", column "); column != std::string::npos) {
      message.erase(0, message.find(": ", column) + 2);
    } else if (const auto tag = message.find("] "); tag != std::string::npos) {
      message.erase(0, tag + 2);
    }
    if (const auto last = message.find("; last read: "); last != std::string::npos) {
      const auto expected = message.find("; expected ", last);
      message.erase(last, expected == std::string::npos ? std::string::npos : expected - last);
    }
    return message;
  }

  // Places a value: the root, the next array element, or the member whose key came last.
  Json* add(Json value) {
    Json* slot = &root_;
    if (!open_.empty() && open_.back()->is_array()) {
      open_.back()->push_back(std::move(value));
      return &open_.back()->back();
    }
    if (!open_.empty()) slot = member_;
    *slot = std::move(value);
    return slot;
  }

  bool open(Json container) {
    if (open_.size() >= kMaxDepth) {
      fail(c10::str(": nesting deeper than ", kMaxDepth, " levels"));
    }
    const bool is_object = container.is_object();
    open_.push_back(add(std::move(container)));
    if (is_object) keys_.emplace_back();
    return true;
  }

  bool close() {
    if (open_.back()->is_object()) keys_.pop_back();
    open_.pop_back();
    return true;
  }

  Json& root_;
  std::string_view what_;
  std::vector<Json*> open_;                            // containers being filled, outermost first
  std::vector<std::unordered_set<std::string>> keys_;  // keys seen in each open object
  Json* member_ = nullptr;                             // value of the last key read
};

[[noreturn]] void wrong_type(std::string_view expected, const Json& got) {
  throw std::runtime_error(c10::str("JSON: expected ", expected, ", got ", json_type_name(got)));
}

}  // namespace

Json parse_json(std::string_view text, std::string_view what) {
  Json root;
  StrictBuilder builder(root, what);
  Json::sax_parse(text, &builder);
  return root;
}

Json read_json_file(const std::filesystem::path& path) {
  return parse_json(read_file(path), path.string());
}

std::optional<std::int64_t> json_int64(const Json& value) {
  if (value.is_number_unsigned()) {
    const auto n = value.get<std::uint64_t>();
    if (n > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(n);
  }
  if (value.is_number_integer()) return value.get<std::int64_t>();
  return std::nullopt;
}

const Json* json_find(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const Json& json_at(const Json& object, std::string_view key) {
  if (!object.is_object()) wrong_type("object", object);
  const Json* value = json_find(object, key);
  if (value == nullptr) throw std::runtime_error(c10::str("JSON: missing key \"", key, "\""));
  return *value;
}

std::int64_t json_to_int64(const Json& value) {
  if (const auto n = json_int64(value)) return *n;
  if (value.is_number()) {
    throw std::runtime_error(
        c10::str("JSON: expected an integer in int64 range, got number ", value.dump()));
  }
  wrong_type("integer", value);
}

double json_to_double(const Json& value) {
  if (!value.is_number()) wrong_type("number", value);
  return value.get<double>();
}

bool json_to_bool(const Json& value) {
  if (!value.is_boolean()) wrong_type("bool", value);
  return value.get<bool>();
}

const std::string& json_to_string(const Json& value) {
  if (!value.is_string()) wrong_type("string", value);
  return value.get_ref<const std::string&>();
}

std::string json_type_name(const Json& value) {
  return json_int64(value) ? "integer" : value.type_name();
}

static_assert(std::is_same_v<JsonArray, Json::array_t>);
static_assert(std::is_same_v<JsonObject, Json::object_t>);

const JsonArray& json_to_array(const Json& value) {
  if (!value.is_array()) wrong_type("array", value);
  return value.get_ref<const Json::array_t&>();
}

const JsonObject& json_to_object(const Json& value) {
  if (!value.is_object()) wrong_type("object", value);
  return value.get_ref<const Json::object_t&>();
}

}  // namespace microdit::io
