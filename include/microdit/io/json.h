// JSON values are nlohmann::ordered_json: objects keep insertion order, so a header we write lists
// its keys as they were added. This header adds what reading other programs' files needs on top:
// a strict parse with one-line errors, and reads that accept only the type asked for.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace microdit::io {

using Json = nlohmann::ordered_json;
// Json::array_t and Json::object_t, spelled out: naming those needs all of <nlohmann/json.hpp>.
using JsonArray = std::vector<Json>;
using JsonObject = nlohmann::ordered_map<std::string, Json, std::less<>,
                                         std::allocator<std::pair<const std::string, Json>>>;

// Parses exactly one JSON value surrounded by optional whitespace. Rejects trailing text,
// duplicate object keys, invalid UTF-8, lone surrogates and nesting deeper than 128 levels;
// errors are one std::runtime_error line "<what>: invalid JSON at byte 12: ...".
Json parse_json(std::string_view text, std::string_view what);
// parse_json of a file's text; errors start with the file path.
Json read_json_file(const std::filesystem::path& path);

// The value when it is an integer written without fraction or exponent that fits int64, else
// nullopt (nlohmann's get<std::int64_t>() would truncate 1.5 and wrap values past INT64_MAX).
std::optional<std::int64_t> json_int64(const Json& value);

// Checked reads: nlohmann's get<>() converts between numbers and bools silently and throws
// exceptions tagged "[json.exception...]"; these accept only the named type and throw one
// std::runtime_error line such as "JSON: expected integer, got string".
const Json* json_find(const Json& object, std::string_view key);  // nullptr when absent
const Json& json_at(const Json& object, std::string_view key);    // "JSON: missing key \"k\""
std::int64_t json_to_int64(const Json& value);
double json_to_double(const Json& value);
bool json_to_bool(const Json& value);
const std::string& json_to_string(const Json& value);
const JsonArray& json_to_array(const Json& value);
const JsonObject& json_to_object(const Json& value);  // members in file order
// "integer" for what json_int64 reads, else nlohmann's name ("number", "string", ...).
std::string json_type_name(const Json& value);

}  // namespace microdit::io
