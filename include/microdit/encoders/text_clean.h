// Caption cleaning in front of the CLIP tokenizers: a stated subset of ftfy.fix_text, Python's
// html.unescape, whitespace collapsing and Python's str.lower, each reproducing the Python
// behaviour on the inputs it covers (Unicode 14.0.0, the version of Python 3.11's unicodedata
// and of Debian's PCRE2 10.42). docs/tokenizer.md has the full account.
//
// ftfy_fix_text implements these steps of ftfy 6.3's fix_text with its default TextFixerConfig,
// in ftfy's order, per line segment, repeated until the text stops changing:
//   unescape_html      "&name;" for our entity subset (below) plus ftfy's all-caps aliases of
//                      lowercase names (&EACUTE; -> É), "&#NNN;" / "&#xHH;"; skipped for the
//                      segment holding the first '<' and every later one, as ftfy's "auto"
//   fix_c1_controls    U+0080..U+009F -> their Windows-1252 characters (0x81 0x8D 0x8F 0x90 0x9D
//                      stay)
//   fix_latin_ligatures  ĳ Ĳ ŉ Ǳ ǲ ǳ Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ -> their letters
//   fix_character_width  U+FF01..U+FFEF -> NFKC (fullwidth ASCII, halfwidth katakana/hangul);
//                      U+3000 -> space
//   uncurl_quotes      U+02BC U+2018..U+201B -> ', U+201C..U+201F -> "
//   fix_line_breaks    CRLF, CR, U+2028, U+2029, U+0085 -> LF
//   remove_terminal_escapes  ESC '[' (digits | ';')* letter
//   remove_control_chars     U+0000..0008, 000B, 000E..001F, 007F, 206A..206F, FEFF, FFF9..FFFC
//   normalization      NFC
// Not implemented: fix_encoding (mojibake detection and repair, with restore_byte_a0,
// replace_lossy_sequences and decode_inconsistent_utf8): text that ftfy would re-decode (such as
// "cafÃ©") passes through unchanged. fix_surrogates has nothing to do on UTF-8 input. Segments are
// not split at ftfy's max_decode_length (10^6 code points).
//
// Entity subset (ftfy's unescape_html and html_unescape): the 252 HTML 4.01 names plus &apos;,
// with ';', and every name Python also decodes without ';' (the 106 legacy ones and AMP COPY GT
// LT QUOT REG), with the values of Python's HTML5 table. The other ~1,900 HTML5-only names
// (&check;, &bigstar;, &NotEqualTilde;, ...) are left as written.
//
// Every function takes and returns UTF-8. Malformed UTF-8 is decoded as Python's
// bytes.decode("utf-8", "replace") does: each maximal invalid subsequence becomes U+FFFD.
#pragma once

#include <string>
#include <string_view>

namespace microdit::encoders {

// The ftfy.fix_text subset described above.
std::string ftfy_fix_text(std::string_view text);

// Python's html.unescape (numeric references with its replacement rules, named references with
// the longest-prefix rule for names without ';') over the entity subset described above.
std::string html_unescape(std::string_view text);

// Unicode Normalization Form C.
std::string nfc_normalize(std::string_view text);

// Python's str.lower(): full lowercase mapping (İ -> i̇) with the Final_Sigma rule for Σ.
std::string python_lower(std::string_view text);

// " ".join(text.split()): runs of Python whitespace (str.isspace) become one space, and the ends
// are trimmed.
std::string collapse_whitespace(std::string_view text);

// Python's str.isspace() for one code point.
bool is_python_space(char32_t c);

// open_clip SimpleTokenizer's clean="lower": ftfy.fix_text, html.unescape twice, whitespace
// collapse, lowercase.
std::string clean_open_clip(std::string_view text);

// HF CLIPTokenizer's cleaning (with ftfy installed): ftfy.fix_text, re.sub(r"\s+", " ") and
// strip, lowercase. No html.unescape. (Its \s lacks U+001C..U+001F, which fix_text removes.)
std::string clean_hf(std::string_view text);

// UTF-8 <-> code points; decoding replaces malformed input as described above.
std::u32string utf8_to_code_points(std::string_view text);
std::string code_points_to_utf8(std::u32string_view text);

}  // namespace microdit::encoders
