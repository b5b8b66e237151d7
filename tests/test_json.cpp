// Tests for the strict JSON parser and compact writer (io/json.h).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>

#include "microdit/io/json.h"

namespace microdit::io {
namespace {

// Passes when `parse_json(text)` throws a std::runtime_error whose message contains `piece`.
testing::AssertionResult rejects(std::string_view text, std::string_view piece) {
  try {
    parse_json(text);
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    if (message.find(piece) != std::string::npos) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "message \"" << message << "\" lacks \"" << piece << "\"";
  }
  return testing::AssertionFailure() << "accepted " << text;
}

TEST(Json, ParsesScalars) {
  EXPECT_TRUE(parse_json("null").is_null());
  EXPECT_TRUE(parse_json("true").as_bool());
  EXPECT_FALSE(parse_json(" false ").as_bool());
  EXPECT_EQ(parse_json("\"hi\"").as_string(), "hi");
  EXPECT_DOUBLE_EQ(parse_json("-1.5e2").as_double(), -150.0);
  EXPECT_DOUBLE_EQ(parse_json("0.25").as_double(), 0.25);
}

TEST(Json, IntegersAreExact) {
  const Json big = parse_json("9007199254740993");  // 2^53 + 1: not representable as double
  ASSERT_TRUE(big.is_integer());
  EXPECT_EQ(big.as_int(), 9007199254740993LL);
  EXPECT_EQ(parse_json("-9223372036854775808").as_int(), INT64_MIN);
  EXPECT_TRUE(parse_json("-0").is_integer());
}

TEST(Json, FractionsAndOverflowAreNotIntegers) {
  EXPECT_FALSE(parse_json("1.0").is_integer());
  EXPECT_FALSE(parse_json("1e2").is_integer());
  const Json huge = parse_json("18446744073709551616");
  EXPECT_FALSE(huge.is_integer());
  EXPECT_DOUBLE_EQ(huge.as_double(), 18446744073709551616.0);
  EXPECT_THROW(parse_json("1.5").as_int(), std::runtime_error);
}

TEST(Json, ObjectsKeepInsertionOrder) {
  const Json v = parse_json(R"({"z": 1, "a": [true, null, "x"], "m": {}})");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v.as_object()[0].first, "z");
  EXPECT_EQ(v.as_object()[1].first, "a");
  EXPECT_EQ(v.at("a").at(2).as_string(), "x");
  EXPECT_TRUE(v.at("m").is_object());
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(v.dump(), R"({"z":1,"a":[true,null,"x"],"m":{}})");
}

TEST(Json, DecodesEscapesAndSurrogatePairs) {
  EXPECT_EQ(parse_json(R"("a\"b\\c\/d\b\f\n\r\t")").as_string(), "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(parse_json(R"("\u00e9\u20AC")").as_string(), "\xc3\xa9\xe2\x82\xac");
  EXPECT_EQ(parse_json(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");  // U+1F600
  EXPECT_EQ(parse_json("\"\xf0\x9f\x98\x80\"").as_string(), "\xf0\x9f\x98\x80");
  EXPECT_EQ(parse_json(R"("\u0000")").as_string(), std::string(1, '\0'));
}

TEST(Json, RejectsMalformedText) {
  EXPECT_TRUE(rejects("", "byte 0: expected a JSON value, got end of input"));
  EXPECT_TRUE(rejects("{} x", "byte 3: expected end of input after the JSON value, got 'x'"));
  EXPECT_TRUE(rejects("[1,]", "byte 3: expected a JSON value"));
  EXPECT_TRUE(rejects("{\"a\" 1}", "byte 5: expected ':' after an object key"));
  EXPECT_TRUE(rejects("{\"a\":1,}", "byte 7: expected a string key"));
  EXPECT_TRUE(rejects("[1 2]", "expected ',' or ']' after an array element"));
  EXPECT_TRUE(rejects("{'a':1}", "expected a string key, got '''"));
  EXPECT_TRUE(rejects("tru", "expected 'true'"));
  EXPECT_TRUE(rejects("\"abc", "expected '\"' to close the string, got end of input"));
}

TEST(Json, RejectsNonRfcNumbers) {
  EXPECT_TRUE(rejects("01", "byte 1: expected end of input"));
  EXPECT_TRUE(rejects("+1", "expected a JSON value"));
  EXPECT_TRUE(rejects("1.", "expected a digit after '.'"));
  EXPECT_TRUE(rejects(".5", "expected a JSON value"));
  EXPECT_TRUE(rejects("1e", "expected a digit in the exponent"));
  EXPECT_TRUE(rejects("-", "expected a digit"));
  EXPECT_TRUE(rejects("NaN", "expected a JSON value"));
  EXPECT_TRUE(rejects("1e400", "expected a number within double range"));
}

TEST(Json, RejectsBadStrings) {
  EXPECT_TRUE(rejects("\"a\nb\"", "byte 2: expected an escaped control character"));
  EXPECT_TRUE(rejects(R"("\x")", "expected an escape character"));
  EXPECT_TRUE(rejects(R"("\u12G4")", "expected a hex digit"));
  EXPECT_TRUE(rejects(R"("\ud83d")", "low surrogate after a high surrogate"));
  EXPECT_TRUE(rejects(R"("\ud83d\u0041")", "expected a low surrogate"));
  EXPECT_TRUE(rejects(R"("\ude00")", "lone low surrogate"));
  EXPECT_TRUE(rejects("\"\xff\"", "byte 1: expected valid UTF-8, got byte 0xff"));
  EXPECT_TRUE(rejects("\"\xc0\xaf\"", "expected valid UTF-8"));      // overlong '/'
  EXPECT_TRUE(rejects("\"\xed\xa0\x80\"", "expected valid UTF-8"));  // encoded surrogate
  EXPECT_TRUE(rejects("\"\xe2\x82\"", "expected valid UTF-8"));      // truncated sequence
}

TEST(Json, RejectsDuplicateKeys) {
  EXPECT_TRUE(rejects(R"({"a":1,"b":2,"a":3})", "byte 13: duplicate object key \"a\""));
  EXPECT_NO_THROW(parse_json(R"({"a":{"a":1}})"));
}

TEST(Json, RejectsDeepNesting) {
  EXPECT_NO_THROW(parse_json(std::string(100, '[') + std::string(100, ']')));
  EXPECT_TRUE(rejects(std::string(200, '[') + std::string(200, ']'), "nesting no deeper than"));
}

TEST(Json, AccessorsNameTheProblem) {
  const Json v = parse_json(R"({"n": 1.5, "s": "x"})");
  try {
    v.at("missing");
    FAIL() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "JSON: missing key \"missing\"");
  }
  try {
    v.at("s").as_int();
    FAIL() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "JSON: expected integer, got string");
  }
  EXPECT_THROW(v.at("n").as_string(), std::runtime_error);
  EXPECT_THROW(v.at("s").at(0), std::runtime_error);
  EXPECT_THROW(parse_json("[1]").at(1), std::runtime_error);
}

TEST(Json, DumpEscapesLikeSerde) {
  const Json v(std::string("q\"b\\n\n\x01\x1f\x7f\xc3\xa9"));
  EXPECT_EQ(v.dump(), "\"q\\\"b\\\\n\\n\\u0001\\u001f\x7f\xc3\xa9\"");
}

TEST(Json, DumpNumbers) {
  EXPECT_EQ(Json(3).dump(), "3");
  EXPECT_EQ(Json(std::int64_t{-7}).dump(), "-7");
  EXPECT_EQ(Json(std::uint64_t{18446744073709551615ULL}).dump(), "18446744073709551616.0");
  EXPECT_EQ(Json(2.0).dump(), "2.0");
  EXPECT_EQ(Json(0.1).dump(), "0.1");
  EXPECT_EQ(Json(1e300).dump(), "1e+300");
  EXPECT_THROW(Json(std::numeric_limits<double>::infinity()).dump(), std::runtime_error);
}

TEST(Json, RoundTripsThroughText) {
  const std::string text =
      R"({"a":[1,-2.5,true,false,null],"b":{"c":"\u00e9\n"},"d":[],"e":{},"f":1e-07})";
  const Json v = parse_json(text);
  EXPECT_EQ(parse_json(v.dump()), v);
}

TEST(Json, BuildsValues) {
  Json obj = Json::object();
  obj.set("k", 1);
  obj.set("list", Json::array());
  obj.set("k", "replaced");
  Json list = Json::array();
  list.push_back(Json(nullptr));
  list.push_back(false);
  obj.set("list", list);
  EXPECT_EQ(obj.dump(), R"({"k":"replaced","list":[null,false]})");
  EXPECT_THROW(list.set("x", 1), std::runtime_error);
}

TEST(Json, ParsesTheReferenceConfig) {
  std::ifstream in(std::filesystem::path(MICRODIT_REFERENCE_DIR) / "config.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Json config = parse_json(text);
  EXPECT_EQ(config.at("dit_kwargs").at("dim").as_int(), 64);
  EXPECT_DOUBLE_EQ(config.at("dit_kwargs").at("norm_eps").as_double(), 1e-6);
  EXPECT_EQ(config.at("edm").at("S_max").as_string(), "inf");
  EXPECT_EQ(parse_json(config.dump()), config);
}

}  // namespace
}  // namespace microdit::io
