// The caption cleaner of the official data preparation (micro_diffusion's
// CaptionProcessor.clean_caption, itself DeepFloyd IF's): clean_caption applies one logic pass
// twice. A pass is, in order:
//   1. urllib.parse.unquote_plus ('+' -> space, %XX -> byte, bytes decoded as UTF-8 with
//      U+FFFD replacement), str.strip, str.lower;
//   2. "<person>" -> "person", then removal of URL-like text (two regexes);
//   3. BeautifulSoup(text, "html.parser").text;
//   4. removal of @nicknames, CJK (U+31C0..U+9FFF), IP addresses, article ids ("1:23" at the
//      end), "#123" / "#12345...", runs of 6+ digits, file names; all dashes -> "-", curly and
//      other quotes -> '"' or "'", literal "\n" -> space, "&quot;" / "&amp" dropped, runs of
//      quotes -> '"', runs of dots and of bad punctuation -> space, " . " -> space;
//   5. more than 3 of '-' and '_' in total: each becomes a space (slugs and snake_case);
//   6. basic_clean: ftfy.fix_text, html.unescape twice, strip;
//   7. removal of product codes (jc6640, jc6640vc, 6640vc231, j2d1a2a...), "free shipping",
//      "free download", "click for/on x", image-format words, "page 12", sizes (1920x1080,
//      3×4); " : " -> ": ", a space after ",./" that follow a non-digit, whitespace runs -> one
//      space, surrounding quotes and a leading / trailing punctuation character removed, a lone
//      ".name" removed, strip.
// The regexes run on PCRE2 (UTF + UCP) with Python re's semantics on str: \w \d \b are
// Unicode-aware and agree with PCRE2 10.42's (both Unicode 14), and \s / \S are spelled out as
// Python's str.isspace set (PCRE2's \s differs at U+001C..U+001F and U+180E).
//
// Documented SUBSET, the places where the output can differ from the Python code:
//   - Step 3 reproduces html.parser's tokenizer (tags with attributes, end tags, comments,
//     declarations, processing instructions, <![CDATA[...]]>, raw <script>/<style> content, and
//     its handling of incomplete constructs at the end of the text) and BeautifulSoup's tree
//     rules that reach .text (void elements, string-container tags script/style/template/rt/rp
//     whose text is dropped, whitespace-only strings collapsed outside <pre>/<textarea>). Named
//     references are resolved over the entity subset of encoders::html_unescape (the HTML 4.01
//     names and &apos;); the ~1,900 HTML5-only names (&bigstar;, &check;, ...) that
//     BeautifulSoup decodes stay as written ("&bigstar;" -> "&bigstar").
//   - Step 6 uses encoders::ftfy_fix_text and encoders::html_unescape (text_clean.h), so it
//     inherits their subset: no mojibake repair (ftfy's fix_encoding: "cafÃ©" stays), and
//     html.unescape knows the same entity subset as above.
//   - Where html.parser rejects the markup (a "<![" marked section with an unknown keyword or no
//     name, e.g. "<![foo]>"), Python raises bs4's ParserRejectedMarkup; clean_caption throws
//     std::runtime_error there.
// Malformed UTF-8 input is first decoded with U+FFFD replacement (as bytes.decode("utf-8",
// "replace")). tests/test_caption_cleaner.cpp compares with the Python code on the captions of
// tests/data/captions/cases.jsonl (scripts/reference/make_caption_reference.py).
//
// Needs PCRE2 (libpcre2-dev): in a build without it both functions throw std::runtime_error.
// Thread-safe: the regexes are compiled once and only read.
#pragma once

#include <string>
#include <string_view>

namespace microdit::data {

// CaptionProcessor().clean_caption(caption): two logic passes. UTF-8 in and out.
std::string clean_caption(std::string_view caption);

// One logic pass (clean_caption_logic).
std::string clean_caption_once(std::string_view caption);

}  // namespace microdit::data
