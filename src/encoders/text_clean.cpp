// Caption cleaning: the ftfy subset, html.unescape, NFC, str.lower (see text_clean.h).
// Everything works on code points (std::u32string); the tables (text_clean_tables.inc) are
// generated from Python's unicodedata so that each step agrees with Python character for
// character. Our own code because ftfy is Python only and ICU's normalization and case mapping
// follow the system's Unicode version, not the Python 3.11 (Unicode 14) that made the captions'
// reference tokens.
#include "microdit/encoders/text_clean.h"

#include <algorithm>
#include <cstdint>
#include <span>
#include <unordered_map>

#include "microdit/util/utf8.h"

namespace microdit::encoders {

namespace {

struct Decomposition {
  char32_t cp, first, second;  // second == 0: singleton
  bool composes;               // a primary composite: NFC recomposes first + second into cp
};
struct CombiningClassRange {
  char32_t first, last;
  std::uint8_t ccc;
};
struct LowercaseRange {
  char32_t first, last;  // every stride-th code point from first maps to cp + delta
  std::int32_t delta;
  std::int32_t stride;
};
struct CodePointRange {
  char32_t first, last;
};
struct Replacement {
  char32_t cp;
  std::u32string_view text;
};
struct Entity {
  std::string_view name;  // without '&'; ';' included where the name has one
  std::u32string_view text;
};

// The tables (Unicode 14.0.0) are defined at the end of this file.
extern const std::span<const Decomposition> decompositions;
extern const std::span<const CombiningClassRange> combining_classes;
extern const std::span<const LowercaseRange> lowercase_ranges;
extern const std::span<const CodePointRange> cased, case_ignorable, decimal_digits;
extern const std::span<const Replacement> character_width;
extern const std::span<const Entity> entities, ftfy_uppercase_entities;

template <class Range>
const Range* find_range(std::span<const Range> table, char32_t c) {
  auto it = std::upper_bound(table.begin(), table.end(), c,
                             [](char32_t v, const Range& r) { return v < r.first; });
  if (it == table.begin()) return nullptr;
  --it;
  return c <= it->last ? &*it : nullptr;
}

bool in_ranges(std::span<const CodePointRange> table, char32_t c) {
  return find_range(table, c) != nullptr;
}

// ---- UTF-8 ---------------------------------------------------------------------------------

// ---- Entities ------------------------------------------------------------------------------

const Entity* find_entity(std::span<const Entity> table, std::u32string_view name) {
  std::string ascii;
  for (char32_t c : name) {
    if (c >= 0x80) return nullptr;
    ascii += static_cast<char>(c);
  }
  auto it = std::lower_bound(table.begin(), table.end(), ascii,
                             [](const Entity& e, const std::string& n) { return e.name < n; });
  return it != table.end() && it->name == ascii ? &*it : nullptr;
}

// Windows-1252 for 0x80..0x9F; the five bytes it leaves undefined map to themselves (ftfy's
// "sloppy-windows-1252", and Python's html module for numeric references).
constexpr char32_t kWindows1252C1[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

// Python html's _replace_charref for a numeric reference (num saturates above 0x10FFFF).
std::u32string numeric_reference(std::uint32_t num) {
  if (num == 0) return U"\uFFFD";
  if (num == 0x0D) return U"\r";
  if (num >= 0x80 && num <= 0x9F) return std::u32string(1, kWindows1252C1[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  if ((num >= 0x1 && num <= 0x8) || (num >= 0xE && num <= 0x1F) || num == 0x7F || num == 0xB ||
      (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE) {
    return U"";
  }
  return std::u32string(1, static_cast<char32_t>(num));
}

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_ascii_alnum(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Parses the digits of a numeric reference at text[pos...]; returns the end of the digits.
std::size_t parse_number(std::u32string_view text, std::size_t pos, int base,
                         std::uint32_t& value) {
  value = 0;
  for (; pos < text.size() && (base == 16 ? is_ascii_hex(text[pos]) : is_ascii_digit(text[pos]));
       ++pos) {
    const char32_t c = text[pos];
    const std::uint32_t digit = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    value = std::min<std::uint32_t>(value * base + digit, 0x110000);
  }
  return pos;
}

// Python's html.unescape (regex &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)).
std::u32string unescape_python(std::u32string_view text) {
  if (text.find(U'&') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != U'&') {
      out += text[i++];
      continue;
    }
    const std::size_t j = i + 1;
    if (j < text.size() && text[j] == U'#') {
      const bool hex = j + 1 < text.size() && (text[j + 1] == U'x' || text[j + 1] == U'X');
      const std::size_t digits = hex ? j + 2 : j + 1;
      std::uint32_t num = 0;
      std::size_t end = parse_number(text, digits, hex ? 16 : 10, num);
      if (end == digits) {  // "&#" without digits: not a reference
        out += text[i++];
        continue;
      }
      if (end < text.size() && text[end] == U';') ++end;
      out += numeric_reference(num);
      i = end;
      continue;
    }
    std::size_t end = j;
    while (end < text.size() && end - j < 32 &&
           std::u32string_view(U"\t\n\f <&#;").find(text[end]) == std::u32string_view::npos) {
      ++end;
    }
    if (end == j) {
      out += text[i++];
      continue;
    }
    if (end < text.size() && text[end] == U';') ++end;
    const std::u32string_view name = text.substr(j, end - j);
    if (const Entity* e = find_entity(entities, name)) {
      out += e->text;
    } else {
      std::size_t x = name.size() - 1;
      for (; x >= 2; --x) {
        if (const Entity* p = find_entity(entities, name.substr(0, x))) {
          out += p->text;
          out += name.substr(x);
          break;
        }
      }
      if (x < 2) {
        out += U'&';
        out += name;
      }
    }
    i = end;
  }
  return out;
}

// ftfy's unescape_html: &#?[0-9A-Za-z]{1,24}; decoded when its name is in the table (or ftfy's
// all-caps aliases), or when it is a numeric reference that html.unescape decodes whole.
std::u32string unescape_ftfy(std::u32string_view text) {
  std::u32string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != U'&') {
      out += text[i++];
      continue;
    }
    const bool numeric = i + 1 < text.size() && text[i + 1] == U'#';
    const std::size_t start = i + (numeric ? 2 : 1);
    std::size_t end = start;
    while (end < text.size() && end - start < 25 && is_ascii_alnum(text[end])) ++end;
    if (end == start || end - start > 24 || end >= text.size() || text[end] != U';') {
      out += text[i++];
      continue;
    }
    const std::u32string_view match = text.substr(i, end + 1 - i);  // "&...;"
    const std::u32string_view name = match.substr(1);
    const Entity* e = numeric ? nullptr : find_entity(entities, name);
    if (e == nullptr && !numeric) e = find_entity(ftfy_uppercase_entities, name);
    if (e != nullptr) {
      out += e->text;
    } else if (numeric) {
      const std::u32string decoded = unescape_python(match);
      out += decoded.find(U';') == std::u32string::npos ? decoded : std::u32string(match);
    } else {
      out += match;
    }
    i = end + 1;
  }
  return out;
}

// ---- The other ftfy fixers -----------------------------------------------------------------

constexpr Replacement kLatinLigatures[] = {
    {0x0132, U"IJ"},      {0x0133, U"ij"},      {0x0149, U"\u02BCn"}, {0x01C4, U"D\u017D"},
    {0x01C5, U"D\u017E"}, {0x01C6, U"d\u017E"}, {0x01C7, U"LJ"},      {0x01C8, U"Lj"},
    {0x01C9, U"lj"},      {0x01CA, U"NJ"},      {0x01CB, U"Nj"},      {0x01CC, U"nj"},
    {0x01F1, U"DZ"},      {0x01F2, U"Dz"},      {0x01F3, U"dz"},      {0xFB00, U"ff"},
    {0xFB01, U"fi"},      {0xFB02, U"fl"},      {0xFB03, U"ffi"},     {0xFB04, U"ffl"},
    {0xFB05, U"\u017Ft"}, {0xFB06, U"st"},
};

const Replacement* find_replacement(std::span<const Replacement> table, char32_t c) {
  auto it = std::lower_bound(table.begin(), table.end(), c,
                             [](const Replacement& r, char32_t v) { return r.cp < v; });
  return it != table.end() && it->cp == c ? &*it : nullptr;
}

bool is_ftfy_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

bool is_ascii_letter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Python re: \x1b\[((?:\d|;)*)([a-zA-Z]) with \d any Unicode decimal digit.
std::size_t terminal_escape_length(std::u32string_view text, std::size_t i) {
  if (text[i] != 0x1B || i + 1 >= text.size() || text[i + 1] != U'[') return 0;
  std::size_t j = i + 2;
  while (j < text.size() && (text[j] == U';' || in_ranges(decimal_digits, text[j]))) ++j;
  return j < text.size() && is_ascii_letter(text[j]) ? j + 1 - i : 0;
}

// The character-by-character fixers, fused into one pass where ftfy's order allows it.
std::u32string fix_characters(std::u32string_view text) {
  // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes: per character, in
  // this order; only uncurl_quotes applies to what an earlier one produced (ŉ -> ʼn -> 'n).
  std::u32string mapped;
  mapped.reserve(text.size());
  const auto uncurled = [](char32_t c) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) return U'\'';
    if (c >= 0x201C && c <= 0x201F) return U'"';
    return c;
  };
  for (char32_t c : text) {
    if (c >= 0x80 && c <= 0x9F) c = kWindows1252C1[c - 0x80];
    const Replacement* r = find_replacement(kLatinLigatures, c);
    if (r == nullptr) r = find_replacement(character_width, c);
    if (r == nullptr) {
      mapped += uncurled(c);
    } else {
      for (char32_t m : r->text) mapped += uncurled(m);
    }
  }
  // fix_line_breaks, then remove_terminal_escapes, then remove_control_chars.
  std::u32string lines;
  lines.reserve(mapped.size());
  for (std::size_t i = 0; i < mapped.size(); ++i) {
    const char32_t c = mapped[i];
    if (c == U'\r') {
      if (i + 1 < mapped.size() && mapped[i + 1] == U'\n') ++i;
      lines += U'\n';
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      lines += U'\n';
    } else {
      lines += c;
    }
  }
  std::u32string out;
  out.reserve(lines.size());
  for (std::size_t i = 0; i < lines.size();) {
    if (const std::size_t n = terminal_escape_length(lines, i)) {
      i += n;
      continue;
    }
    if (!is_ftfy_control(lines[i])) out += lines[i];
    ++i;
  }
  return out;
}

// ---- NFC -----------------------------------------------------------------------------------

constexpr char32_t kHangulFirst = 0xAC00, kHangulLast = 0xD7A3;
constexpr char32_t kJamoL = 0x1100, kJamoV = 0x1161, kJamoT = 0x11A7;
constexpr char32_t kJamoVCount = 21, kJamoTCount = 28, kJamoNCount = 21 * 28;

std::uint8_t combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const CombiningClassRange* r = find_range(combining_classes, c);
  return r ? r->ccc : 0;
}

const Decomposition* find_decomposition(char32_t c) {
  auto it = std::lower_bound(decompositions.begin(), decompositions.end(), c,
                             [](const Decomposition& d, char32_t v) { return d.cp < v; });
  return it != decompositions.end() && it->cp == c ? &*it : nullptr;
}

void decompose(char32_t c, std::u32string& out) {
  if (c >= kHangulFirst && c <= kHangulLast) {
    const char32_t s = c - kHangulFirst;
    out += kJamoL + s / kJamoNCount;
    out += kJamoV + (s % kJamoNCount) / kJamoTCount;
    if (s % kJamoTCount != 0) out += kJamoT + s % kJamoTCount;
    return;
  }
  const Decomposition* d = c >= 0xC0 ? find_decomposition(c) : nullptr;
  if (d == nullptr) {
    out += c;
    return;
  }
  decompose(d->first, out);
  if (d->second != 0) decompose(d->second, out);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kJamoL && a < kJamoL + 19 && b >= kJamoV && b < kJamoV + kJamoVCount) {
    return kHangulFirst + ((a - kJamoL) * kJamoVCount + (b - kJamoV)) * kJamoTCount;
  }
  if (a >= kHangulFirst && a <= kHangulLast && (a - kHangulFirst) % kJamoTCount == 0 &&
      b > kJamoT && b < kJamoT + kJamoTCount) {
    return a + (b - kJamoT);
  }
  static const std::unordered_map<std::uint64_t, char32_t> compositions = [] {
    std::unordered_map<std::uint64_t, char32_t> map;
    for (const Decomposition& d : decompositions) {
      if (d.composes) map.emplace((std::uint64_t{d.first} << 32) | d.second, d.cp);
    }
    return map;
  }();
  auto it = compositions.find((std::uint64_t{a} << 32) | b);
  return it == compositions.end() ? 0 : it->second;
}

std::u32string nfc(std::u32string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x300; })) {
    return std::u32string(text);
  }
  std::u32string decomposed;
  for (char32_t c : text) decompose(c, decomposed);
  // Canonical ordering: stable sort of every run of non-starters by combining class.
  for (std::size_t i = 0; i < decomposed.size();) {
    std::size_t j = i;
    while (j < decomposed.size() && combining_class(decomposed[j]) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(decomposed.begin() + i, decomposed.begin() + j, [](char32_t a, char32_t b) {
        return combining_class(a) < combining_class(b);
      });
    }
    i = j == i ? i + 1 : j;
  }
  // Canonical composition: a character joins the last starter unless blocked by a character in
  // between of equal or higher class (or a starter, which would have become the last starter).
  std::u32string out;
  std::size_t starter = std::u32string::npos;
  std::uint8_t last_ccc = 0;
  for (char32_t c : decomposed) {
    const std::uint8_t ccc = combining_class(c);
    if (starter != std::u32string::npos) {
      const bool adjacent = starter + 1 == out.size();
      if (adjacent || (last_ccc != 0 && last_ccc < ccc)) {
        if (const char32_t composite = compose_pair(out[starter], c)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (ccc == 0) starter = out.size();
    out += c;
    last_ccc = ccc;
  }
  return out;
}

// ---- fix_text ------------------------------------------------------------------------------

std::u32string fix_segment(std::u32string text, bool unescape) {
  for (;;) {
    const std::u32string before = text;
    if (unescape) text = unescape_ftfy(text);
    text = nfc(fix_characters(text));
    if (text == before) return text;
  }
}

std::u32string fix_text(std::u32string_view text) {
  std::u32string out;
  bool unescape = true;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t newline = text.find(U'\n', pos);
    const std::size_t end = newline == std::u32string_view::npos ? text.size() : newline + 1;
    const std::u32string_view segment = text.substr(pos, end - pos);
    if (segment.find(U'<') != std::u32string_view::npos) unescape = false;
    out += fix_segment(std::u32string(segment), unescape);
    pos = end;
  }
  return out;
}

// ---- Whitespace and case -------------------------------------------------------------------

std::u32string collapse(std::u32string_view text) {
  std::u32string out;
  bool pending_space = false;
  for (char32_t c : text) {
    if (is_python_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += U' ';
    pending_space = false;
    out += c;
  }
  return out;
}

// Unicode's Final_Sigma: \p{Cased} \p{Case_Ignorable}* Σ !(\p{Case_Ignorable}* \p{Cased}).
bool is_final_sigma(std::u32string_view text, std::size_t i) {
  std::size_t j = i;
  while (j > 0 && in_ranges(case_ignorable, text[j - 1])) --j;
  if (j == 0 || !in_ranges(cased, text[j - 1])) return false;
  std::size_t k = i + 1;
  while (k < text.size() && in_ranges(case_ignorable, text[k])) ++k;
  return k == text.size() || !in_ranges(cased, text[k]);
}

std::u32string lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c < 0x80) {
      out += c >= 'A' && c <= 'Z' ? c + 32 : c;
    } else if (c == 0x03A3) {
      out += is_final_sigma(text, i) ? 0x03C2 : 0x03C3;
    } else if (c == 0x0130) {
      out += U"i\u0307";
    } else {
      const LowercaseRange* r = find_range(lowercase_ranges, c);
      const bool maps = r != nullptr && (c - r->first) % r->stride == 0;
      out += maps ? static_cast<char32_t>(static_cast<std::int64_t>(c) + r->delta) : c;
    }
  }
  return out;
}

}  // namespace

// ---- Public API ----------------------------------------------------------------------------

std::u32string utf8_to_code_points(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto byte = [&](std::size_t i) {
    return i < text.size() ? static_cast<unsigned char>(text[i]) : 0u;
  };
  for (std::size_t i = 0; i < text.size();) {
    const unsigned c = byte(i);
    if (c < 0x80) {
      out += static_cast<char32_t>(c);
      ++i;
      continue;
    }
    std::size_t length = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    // Decode as far as the sequence is valid; a maximal invalid prefix becomes one U+FFFD.
    char32_t value = length == 2 ? c & 0x1F : length == 3 ? c & 0x0F : c & 0x07;
    std::size_t taken = 1;
    while (length != 0 && taken < length) {
      const unsigned next = byte(i + taken);
      const bool ok = i + taken < text.size() && next >= (taken == 1 ? lo : 0x80u) &&
                      next <= (taken == 1 ? hi : 0xBFu);
      if (!ok) break;
      value = (value << 6) | (next & 0x3F);
      ++taken;
    }
    out += length != 0 && taken == length ? value : U'\uFFFD';
    i += taken;
  }
  return out;
}

std::string code_points_to_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) util::append_utf8(out, c);
  return out;
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string ftfy_fix_text(std::string_view text) {
  return code_points_to_utf8(fix_text(utf8_to_code_points(text)));
}

std::string html_unescape(std::string_view text) {
  return code_points_to_utf8(unescape_python(utf8_to_code_points(text)));
}

std::string nfc_normalize(std::string_view text) {
  return code_points_to_utf8(nfc(utf8_to_code_points(text)));
}

std::string python_lower(std::string_view text) {
  return code_points_to_utf8(lower(utf8_to_code_points(text)));
}

std::string collapse_whitespace(std::string_view text) {
  return code_points_to_utf8(collapse(utf8_to_code_points(text)));
}

std::string clean_open_clip(std::string_view text) {
  const std::u32string fixed = fix_text(utf8_to_code_points(text));
  return code_points_to_utf8(lower(collapse(unescape_python(unescape_python(fixed)))));
}

std::string clean_hf(std::string_view text) {
  return code_points_to_utf8(lower(collapse(fix_text(utf8_to_code_points(text)))));
}

// ---- Tables --------------------------------------------------------------------------------

namespace {

#include "text_clean_tables.inc"  // generated from Python's unicodedata and html.entities

const std::span<const Decomposition> decompositions(kDecompositions);
const std::span<const CombiningClassRange> combining_classes(kCombiningClasses);
const std::span<const LowercaseRange> lowercase_ranges(kLowercase);
const std::span<const CodePointRange> cased(kCased), case_ignorable(kCaseIgnorable),
    decimal_digits(kDecimalDigits);
const std::span<const Replacement> character_width(kCharacterWidth);
const std::span<const Entity> entities(kEntities), ftfy_uppercase_entities(kFtfyUppercaseEntities);

}  // namespace

}  // namespace microdit::encoders
