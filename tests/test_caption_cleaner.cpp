// data::clean_caption against the official data preparation's CaptionProcessor.clean_caption:
// tests/data/captions/cases.jsonl, written by scripts/reference/make_caption_reference.py with
// the Python code (beautifulsoup4, ftfy 6.3).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/data/caption_cleaner.h"
#include "microdit/io/json.h"
#include "test_support.h"

namespace microdit {
namespace {

using data::clean_caption;
using data::clean_caption_once;

#ifdef MICRODIT_HAVE_PCRE2

const std::filesystem::path kCases =
    test::source_dir() / "tests" / "data" / "captions" / "cases.jsonl";

// The cases that differ because of the documented subset (caption_cleaner.h), by input.
const std::set<std::string> kKnownDifferences = {
    // ftfy's fix_encoding is not implemented: Python repairs the mojibake "â€¦" to "…".
    "wait for itâ€¦ loading",
    // HTML5-only entity names: BeautifulSoup decodes &bigstar; (★), and html.unescape decodes
    // &check; (✓, reached as "＆check;", which ftfy's width fix turns into "&check;").
    "&bigstar; star",
    "fullwidth ＆check; ampersand",
};

struct Case {
  std::string input, expected;
};

std::vector<Case> read_cases() {
  std::ifstream in(kCases, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + kCases.string());
  std::vector<Case> cases;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const io::Json record = io::parse_json(line, "test");
    cases.push_back({record.at("input"), record.at("expected")});
  }
  return cases;
}

TEST(CaptionCleaner, MatchesOfficialReference) {
  const std::vector<Case> cases = read_cases();
  ASSERT_GE(cases.size(), 600u);
  std::size_t matched = 0;
  std::set<std::string> differing;
  for (const Case& c : cases) {
    const std::string got = clean_caption(c.input);
    if (got == c.expected) {
      ++matched;
      continue;
    }
    differing.insert(c.input);
    EXPECT_TRUE(kKnownDifferences.count(c.input)) << "input: \"" << c.input << "\"\n  expected: \""
                                                  << c.expected << "\"\n  got: \"" << got << "\"";
  }
  // A known difference that now matches should leave the list.
  for (const std::string& input : kKnownDifferences) {
    EXPECT_TRUE(differing.count(input)) << "listed as known difference, but matches: " << input;
  }
  std::printf("clean_caption: %zu of %zu cases match exactly\n", matched, cases.size());
}

TEST(CaptionCleaner, AppliesTwoPasses) {
  // "%2541" unquotes to "%41" in the first pass and to "A" (then "a") in the second.
  EXPECT_EQ(clean_caption_once("%2541 photo"), "%41 photo");
  EXPECT_EQ(clean_caption("%2541 photo"), "a photo");
}

TEST(CaptionCleaner, RemovesUrls) {
  // The http pattern takes only "http://" and a domain with its path, not the query.
  EXPECT_EQ(clean_caption("see http://foo.bar.com/x?y=1&z=2 now"), "see ?y=1 z=2 now");
  EXPECT_EQ(clean_caption("Visit www.example.ru today!"), "visit today!");
}

TEST(CaptionCleaner, RemovesCjk) {
  EXPECT_EQ(clean_caption("中文字幕 Chinese subtitles"), "chinese subtitles");
}

TEST(CaptionCleaner, NormalisesDashes) {
  EXPECT_EQ(clean_caption("em—dash and en–dash"), "em-dash and en-dash");
  EXPECT_EQ(clean_caption("a\u2015b\uff0dc\u301cd"), "a-b-c-d");
  EXPECT_EQ(clean_caption("this-is-my-cute-cat"), "this is my cute cat");
}

TEST(CaptionCleaner, ExtractsHtmlText) {
  EXPECT_EQ(clean_caption("<b>Bold</b> &amp; <script>x()</script>text"), "bold text");
  EXPECT_EQ(clean_caption("\"quoted caption\""), "quoted caption");
}

TEST(CaptionCleaner, UsesPythonWhitespace) {
  // Python's \s holds U+001C..U+001F and not U+180E; PCRE2's \s the other way round.
  EXPECT_EQ(clean_caption(std::string("a\x1c.\x1c") + "b"), "a b");
  EXPECT_EQ(clean_caption("a\u180e.\u180eb"), "a\u180e.\u180eb");
}

TEST(CaptionCleaner, ThrowsWhereHtmlParserRejects) {
  // bs4 raises ParserRejectedMarkup for these; inside <script> the text is not parsed.
  EXPECT_THROW(clean_caption("<![foo]>x"), std::runtime_error);
  EXPECT_THROW(clean_caption("<![ x"), std::runtime_error);
  EXPECT_EQ(clean_caption("<script><![foo]></script>ok"), "ok");
}

TEST(CaptionCleaner, IsThreadSafe) {
  const std::vector<Case> cases = read_cases();
  std::vector<std::string> serial;
  for (const Case& c : cases) serial.push_back(clean_caption(c.input));
  std::vector<std::vector<std::string>> parallel(4);
  std::vector<std::thread> threads;
  for (auto& out : parallel) {
    threads.emplace_back([&cases, &out] {
      for (const Case& c : cases) out.push_back(clean_caption(c.input));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& out : parallel) EXPECT_EQ(out, serial);
}

#else  // no PCRE2

TEST(CaptionCleaner, NeedsPcre2) { EXPECT_THROW(clean_caption("a caption"), std::runtime_error); }

#endif

}  // namespace
}  // namespace microdit
