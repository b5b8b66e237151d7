// Tests for io/json.h: the strict parse over nlohmann-json, its one-line errors and the checked
// reads.
#include <c10/util/StringUtil.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>

#include "microdit/io/json.h"
#include "test_support.h"

namespace microdit::io {
namespace {

// The message parse_json(text, "t.json") throws, or "" when it accepts the text.
std::string parse_error(std::string_view text) {
  try {
    parse_json(text, "t.json");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// Passes when parse_json rejects `text` with one line that starts with `start` and holds `piece`.
testing::AssertionResult rejects(std::string_view text, std::string_view start,
                                 std::string_view piece = "") {
  const std::string message = parse_error(text);
  if (message.empty()) return testing::AssertionFailure() << "accepted " << text;
  const bool one_clean_line = message.find('\n') == std::string::npos &&
                              message.find("[json.exception") == std::string::npos;
  if (message.rfind(start, 0) != 0 || message.find(piece) == std::string::npos || !one_clean_line) {
    return testing::AssertionFailure() << "message \"" << message << "\"";
  }
  return testing::AssertionSuccess();
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Json, ParsesIntoOrderedObjects) {
  const Json v = parse_json(R"( {"z": 1, "a": [true, null, "x"], "m": {}, "f": -1.5e2} )", "t");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.begin().key(), "z");
  EXPECT_EQ(v.at("a").at(2).get<std::string>(), "x");
  EXPECT_DOUBLE_EQ(v.at("f").get<double>(), -150.0);
  EXPECT_EQ(v.dump(), R"({"z":1,"a":[true,null,"x"],"m":{},"f":-150.0})");
}

TEST(Json, DecodesEscapesAndSurrogatePairs) {
  EXPECT_EQ(parse_json(R"("a\"b\\c\/d\b\f\n\r\t")", "t"), "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(parse_json(R"("\u00e9\u20AC")", "t"), "\xc3\xa9\xe2\x82\xac");
  EXPECT_EQ(parse_json(R"("\ud83d\ude00")", "t"), "\xf0\x9f\x98\x80");  // U+1F600
  EXPECT_EQ(parse_json("\"\xf0\x9f\x98\x80\"", "t"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(parse_json(R"("\u0000")", "t"), std::string(1, '\0'));
}

TEST(Json, ErrorsAreOneLineNamingTheTextAndByte) {
  EXPECT_TRUE(rejects("", "t.json: invalid JSON at byte 0: ", "unexpected end of input"));
  EXPECT_TRUE(rejects("[1,]", "t.json: invalid JSON at byte 3: ", "unexpected ']'"));
  EXPECT_TRUE(rejects("{\"a\" 1}", "t.json: invalid JSON at byte 5: ", "expected ':'"));
  EXPECT_TRUE(rejects("{'a':1}", "t.json: invalid JSON at byte 1: "));
  EXPECT_TRUE(rejects("\"abc", "t.json: invalid JSON at byte 4: "));
  // A raw newline inside a string: the message still is one line.
  EXPECT_TRUE(rejects("\"a\nb\"", "t.json: invalid JSON at byte 2: ", "must be escaped"));
}

TEST(Json, RejectsTrailingText) {
  EXPECT_TRUE(rejects("{} x", "t.json: invalid JSON at byte 3: ", "expected end of input"));
  EXPECT_TRUE(rejects("1 2", "t.json: invalid JSON at byte 2: ", "expected end of input"));
  EXPECT_EQ(parse_json(" {}\n", "t"), Json::object());
}

TEST(Json, RejectsNonRfcNumbers) {
  EXPECT_TRUE(rejects("01", "t.json: invalid JSON at byte 1: "));
  EXPECT_TRUE(rejects("+1", "t.json: invalid JSON at byte 0: "));
  EXPECT_TRUE(rejects("1.", "t.json: invalid JSON at byte 2: "));
  EXPECT_TRUE(rejects(".5", "t.json: invalid JSON at byte 0: "));
  EXPECT_TRUE(rejects("NaN", "t.json: invalid JSON at byte 0: "));
  EXPECT_TRUE(rejects("1e400", "t.json: invalid JSON at byte 4: ", "number overflow"));
}

TEST(Json, RejectsInvalidUtf8) {
  EXPECT_TRUE(rejects("\"\xff\"", "t.json: invalid JSON at byte 1: ", "ill-formed UTF-8"));
  EXPECT_TRUE(rejects("\"\xc0\xaf\"", "t.json: invalid JSON at byte 1: "));      // overlong '/'
  EXPECT_TRUE(rejects("\"\xed\xa0\x80\"", "t.json: invalid JSON at byte 2: "));  // a surrogate
  EXPECT_TRUE(rejects("\"\xe2\x82\"", "t.json: invalid JSON at byte 3: "));      // truncated
  // The offending bytes stay out of the message.
  EXPECT_EQ(parse_error("\"\xff\"").find('\xff'), std::string::npos);
}

TEST(Json, RejectsLoneSurrogates) {
  EXPECT_TRUE(rejects(R"("\ude00")", "t.json: invalid JSON at byte 6: ", "surrogate"));
  EXPECT_TRUE(rejects(R"("\ud83d")", "t.json: invalid JSON at byte 7: ", "surrogate"));
  EXPECT_TRUE(rejects(R"("\ud83d\u0041")", "t.json: invalid JSON at byte 12: ", "surrogate"));
}

TEST(Json, RejectsDuplicateKeys) {
  EXPECT_TRUE(
      rejects(R"({"a":1,"b":2,"a":3})", "t.json: invalid JSON: duplicate object key \"a\""));
  EXPECT_TRUE(rejects(R"([{"x":{}},{"y":{"k":1,"k":1}}])", "t.json: invalid JSON: duplicate"));
  // The same key in different objects is fine.
  EXPECT_EQ(parse_json(R"({"a":{"a":1},"b":[{"a":2},{"a":3}]})", "t").at("b").at(1).at("a"), 3);
}

TEST(Json, RejectsNestingDeeperThan128) {
  const auto nested = [](int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  EXPECT_NO_THROW(parse_json(nested(128), "t"));
  EXPECT_TRUE(rejects(nested(129), "t.json: invalid JSON: nesting deeper than 128 levels"));
  EXPECT_TRUE(rejects(std::string(100'000, '['), "t.json: invalid JSON: nesting deeper"));
}

TEST(Json, ReadJsonFileNamesThePath) {
  test::TempDir dir("json_file");
  const auto path = dir.path / "bad.json";
  test::write_bytes(path, "{\"k\": [1,]}");
  const std::string message = error_of([&] { read_json_file(path); });
  EXPECT_EQ(message.rfind(path.string() + ": invalid JSON at byte 9: ", 0), 0u) << message;
  test::write_bytes(path, R"({"k": [1, 2]})");
  EXPECT_EQ(read_json_file(path).at("k").size(), 2u);
  EXPECT_NE(error_of([&] { read_json_file(dir.path / "none.json"); }).find("none.json"),
            std::string::npos);
}

TEST(Json, Int64OnlyForIntegersInRange) {
  const auto int64 = [](std::string_view text) { return json_int64(parse_json(text, "t")); };
  EXPECT_EQ(int64("9007199254740993"), 9007199254740993LL);  // 2^53 + 1: no double holds it
  EXPECT_EQ(int64("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(int64("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(int64("-0"), 0);
  EXPECT_EQ(int64("9223372036854775808"), std::nullopt);  // past INT64_MAX: nlohmann's uint64
  EXPECT_EQ(int64("18446744073709551616"), std::nullopt);  // past UINT64_MAX: a double
  EXPECT_EQ(int64("1.0"), std::nullopt);
  EXPECT_EQ(int64("1e2"), std::nullopt);
  EXPECT_EQ(int64("true"), std::nullopt);
  EXPECT_EQ(int64("\"1\""), std::nullopt);
  EXPECT_EQ(json_int64(Json(std::numeric_limits<std::uint64_t>::max())), std::nullopt);
  EXPECT_EQ(json_int64(Json(std::uint64_t{7})), 7);
}

TEST(Json, CheckedReadsNameTheProblem) {
  const Json v = parse_json(R"({"n": 1.5, "s": "x", "b": true, "i": 2})", "t");
  EXPECT_EQ(error_of([&] { json_at(v, "missing"); }), "JSON: missing key \"missing\"");
  EXPECT_EQ(error_of([&] { json_at(v.at("s"), "k"); }), "JSON: expected object, got string");
  EXPECT_EQ(error_of([&] { json_to_int64(v.at("s")); }), "JSON: expected integer, got string");
  EXPECT_EQ(error_of([&] { json_to_int64(v.at("n")); }),
            "JSON: expected an integer in int64 range, got number 1.5");
  // nlohmann's get<double>() would read true as 1.0, and get<bool>() throws its own type.
  EXPECT_EQ(error_of([&] { json_to_double(v.at("b")); }), "JSON: expected number, got boolean");
  EXPECT_EQ(error_of([&] { json_to_bool(v.at("i")); }), "JSON: expected bool, got integer");
  EXPECT_EQ(error_of([&] { json_to_string(v.at("i")); }), "JSON: expected string, got integer");
  EXPECT_EQ(error_of([&] { json_to_array(v); }), "JSON: expected array, got object");
  EXPECT_EQ(json_to_int64(v.at("i")), 2);
  EXPECT_DOUBLE_EQ(json_to_double(v.at("i")), 2.0);
  EXPECT_EQ(json_to_string(v.at("s")), "x");
  EXPECT_EQ(json_find(v, "missing"), nullptr);
  EXPECT_EQ(json_find(v.at("s"), "s"), nullptr);  // not an object
  EXPECT_EQ(json_find(v, "s"), &v.at("s"));
  EXPECT_EQ(json_type_name(v.at("n")), "number");
}

// safetensors headers and our JSON lines rely on these forms (serde_json writes the same).
TEST(Json, DumpsCompactlyAsSerde) {
  EXPECT_EQ(Json(std::string("q\"b\\n\n\x01\x1f\x7f\xc3\xa9")).dump(),
            "\"q\\\"b\\\\n\\n\\u0001\\u001f\x7f\xc3\xa9\"");
  EXPECT_EQ(Json(2.0).dump(), "2.0");
  EXPECT_EQ(Json(0.1).dump(), "0.1");
  EXPECT_EQ(Json(1e300).dump(), "1e+300");
  EXPECT_EQ(Json(std::numeric_limits<std::uint64_t>::max()).dump(), "18446744073709551615");
  const std::string text =
      R"({"a":[1,-2.5,true,false,null],"b":{"c":"\u00e9\n"},"d":[],"e":{},"f":1e-07})";
  EXPECT_EQ(parse_json(parse_json(text, "t").dump(), "t"), parse_json(text, "t"));
}

// nlohmann's own parser finds each new key of an ordered_json object by a linear search (18 s
// for CLIP's vocab.json); parse_json appends, so a big object stays fast and in file order.
TEST(Json, ParsesLargeObjectsInLinearTime) {
  std::string text = "{";
  constexpr int kKeys = 100'000;
  for (int i = 0; i < kKeys; ++i) {
    text += c10::str(i > 0 ? "," : "", "\"k", kKeys - i, "\":", i);
  }
  text += "}";
  const auto start = std::chrono::steady_clock::now();
  const Json v = parse_json(text, "t");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(v.size(), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(v.begin().key(), "k100000");
  EXPECT_EQ(v.back(), kKeys - 1);
  EXPECT_LT(seconds, 5.0);
}

TEST(Json, ParsesTheReferenceConfig) {
  const Json config = read_json_file(test::reference_dir() / "config.json");
  EXPECT_EQ(json_to_int64(config.at("dit_kwargs").at("dim")), 64);
  EXPECT_DOUBLE_EQ(config.at("dit_kwargs").at("norm_eps").get<double>(), 1e-6);
  EXPECT_EQ(config.at("edm").at("S_max"), "inf");
  EXPECT_EQ(parse_json(config.dump(), "t"), config);
}

}  // namespace
}  // namespace microdit::io
