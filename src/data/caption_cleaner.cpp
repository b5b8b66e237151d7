// The official caption cleaner (see caption_cleaner.h).
#include "microdit/data/caption_cleaner.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "microdit/encoders/text_clean.h"

#ifdef MICRODIT_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

namespace microdit::data {

#ifdef MICRODIT_HAVE_PCRE2
namespace {

using encoders::code_points_to_utf8;
using encoders::python_lower;
using encoders::utf8_to_code_points;

constexpr std::size_t npos = std::string::npos;

// ---------------------------------------------------------------------------------------------
// Python str helpers
// ---------------------------------------------------------------------------------------------

std::string python_strip(std::string_view text) {
  const std::u32string points = utf8_to_code_points(text);
  std::size_t begin = 0, end = points.size();
  while (begin < end && encoders::is_python_space(points[begin])) ++begin;
  while (end > begin && encoders::is_python_space(points[end - 1])) --end;
  return code_points_to_utf8(std::u32string_view(points).substr(begin, end - begin));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// urllib.parse.unquote_plus. Python decodes only the %-escaped ASCII runs; decoding the whole
// byte string gives the same text, because an escaped run ends where a raw non-ASCII character
// starts with a UTF-8 lead byte. Decoding always (Python skips it without '%') also replaces
// malformed input, which a Python str cannot hold.
std::string unquote_plus(std::string_view text) {
  std::string bytes;
  bytes.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const int high = i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
    const int low = high >= 0 ? hex_value(text[i + 2]) : -1;
    if (text[i] == '%' && low >= 0) {
      bytes += static_cast<char>(high * 16 + low);
      i += 2;
    } else {
      bytes += text[i] == '+' ? ' ' : text[i];
    }
  }
  return code_points_to_utf8(utf8_to_code_points(bytes));
}

bool is_ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_ascii_space_only(std::string_view text) {
  return text.find_first_not_of(" \n\t\f\r") == npos;  // BeautifulSoup's ASCII_SPACES
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

// ---------------------------------------------------------------------------------------------
// PCRE2 with Python re semantics
// ---------------------------------------------------------------------------------------------

// str.isspace(), the set of Python's \s on str.
constexpr std::string_view kPythonSpace =
    R"(\t\n\x{0B}\f\r\x{1C}-\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029})"
    R"(\x{202F}\x{205F}\x{3000})";

// A Python pattern in PCRE2 syntax: \s and \S become explicit classes. \S inside a class has no
// such spelling; the patterns below do not use it.
std::string pcre2_source(std::string_view python) {
  std::string out;
  bool in_class = false;
  for (std::size_t i = 0; i < python.size(); ++i) {
    const char c = python[i];
    if (c == '\\' && i + 1 < python.size()) {
      const char next = python[++i];
      if (next == 's') {
        out += in_class ? std::string(kPythonSpace) : "[" + std::string(kPythonSpace) + "]";
      } else if (next == 'S' && !in_class) {
        out += "[^" + std::string(kPythonSpace) + "]";
      } else if (next == 'S') {
        throw std::logic_error("clean_caption: \\S inside a character class");
      } else {
        out += {c, next};
      }
      continue;
    }
    // An unescaped '[' opens a class (inside one it is a literal and the class stays open), an
    // unescaped ']' closes it (outside one it is a literal). No pattern starts a class with ']'.
    if (c == '[' || c == ']') in_class = c == '[';
    out += c;
  }
  return out;
}

[[noreturn]] void fail_pcre2(std::string_view what, int code) {
  std::array<PCRE2_UCHAR, 256> message{};
  pcre2_get_error_message(code, message.data(), message.size());
  throw std::runtime_error("clean_caption: PCRE2 " + std::string(what) + ": " +
                           reinterpret_cast<const char*>(message.data()));
}

PCRE2_SPTR pcre2_text(std::string_view text) {
  return reinterpret_cast<PCRE2_SPTR>(text.empty() ? "" : text.data());
}

struct Span {
  std::size_t begin = 0, end = 0;
};

struct Match {
  Span whole;
  Span group;  // group 1; empty when the pattern has none
};

// One compiled pattern. No JIT: captions are short, and the interpreter has no JIT stack limit
// to fall back from.
class Regex {
 public:
  explicit Regex(std::string_view python_pattern) {
    const std::string source = pcre2_source(python_pattern);
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_.reset(pcre2_compile(pcre2_text(source), source.size(), PCRE2_UTF | PCRE2_UCP, &error,
                              &offset, nullptr));
    if (!code_) fail_pcre2("rejects pattern " + source, error);
  }

  // re.sub(pattern, replacement, text) for every match; `replacement` in PCRE2 syntax ($1).
  std::string sub(std::string_view text, std::string_view replacement) const {
    constexpr uint32_t kOptions = PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH |
                                  PCRE2_SUBSTITUTE_UNSET_EMPTY | PCRE2_NO_UTF_CHECK;
    std::string out(text.size() + 64, '\0');
    for (;;) {
      PCRE2_SIZE length = out.size();
      const int rc = pcre2_substitute(code_.get(), pcre2_text(text), text.size(), 0, kOptions,
                                      nullptr, nullptr, pcre2_text(replacement), replacement.size(),
                                      reinterpret_cast<PCRE2_UCHAR*>(out.data()), &length);
      if (rc >= 0) {
        out.resize(length);
        return out;
      }
      if (rc != PCRE2_ERROR_NOMEMORY) fail_pcre2("substitution failed", rc);
      out.resize(length);  // the size needed, terminating zero included
    }
  }

  // pattern.match(text, offset): anchored at offset; lookbehinds see the text before it.
  std::optional<Match> match(std::string_view text, std::size_t offset) const {
    return find(text, offset, PCRE2_ANCHORED);
  }

  // pattern.search(text, offset).
  std::optional<Match> search(std::string_view text, std::size_t offset) const {
    return find(text, offset, 0);
  }

 private:
  std::optional<Match> find(std::string_view text, std::size_t offset, uint32_t options) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
    const int rc = pcre2_match(code_.get(), pcre2_text(text), text.size(), offset,
                               options | PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
    if (rc < 0) fail_pcre2("match failed", rc);
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(data.get());
    Match match{{span[0], span[1]}, {}};
    if (rc > 1 && span[2] != PCRE2_UNSET) match.group = {span[2], span[3]};
    return match;
  }

  struct CodeFree {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  std::unique_ptr<pcre2_code, CodeFree> code_;
};

struct Substitution {
  Regex pattern;
  std::string_view replacement;  // a literal, in PCRE2 syntax ($1)
};
using Substitutions = std::vector<Substitution>;

Substitutions compile(std::initializer_list<std::pair<std::string, std::string_view>> rules) {
  Substitutions out;
  out.reserve(rules.size());
  for (const auto& [pattern, replacement] : rules) out.push_back({Regex(pattern), replacement});
  return out;
}

std::string substitute_all(const Substitutions& substitutions, std::string text) {
  for (const Substitution& s : substitutions) text = s.pattern.sub(text, s.replacement);
  return text;
}

// The URL pattern of the official code, once with "https?:" and once with "www:".
std::string url_pattern(std::string_view scheme) {
  return R"(\b((?:)" + std::string(scheme) +
         R"(:(?:\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it))"
         R"([\w/-]*\b\/?(?!@))))";
}

// The re.sub calls of one logic pass, in the official order, around its three other steps.
struct CaptionRules {
  Substitutions before_html = compile({
      {"<person>", "person"},
      {url_pattern("https?"), ""},
      {url_pattern("www"), ""},
  });
  Substitutions before_basic_clean = compile({
      {R"(@[\w\d]+\b)", ""},
      // The seven CJK block patterns (strokes .. unified ideographs) cover one range together.
      {R"([\x{31C0}-\x{9FFF}]+)", ""},
      {R"([\x{2D}\x{58A}\x{5BE}\x{1400}\x{1806}\x{2010}-\x{2015}\x{2E17}\x{2E1A}\x{2E3A})"
       R"(\x{2E3B}\x{2E40}\x{301C}\x{3030}\x{30A0}\x{FE31}\x{FE32}\x{FE58}\x{FE63}\x{FF0D}]+)",
       "-"},
      {"[`´«»“”¨]", "\""},
      {"[‘’]", "'"},
      {"&quot;?", ""},
      {"&amp", ""},
      {R"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})", " "},  // IP addresses
      {R"(\d:\d\d\s+$)", ""},                          // article ids
      {R"(\\n)", " "},
      {R"(#\d{1,3}\b)", ""},
      {R"(#\d{5,}\b)", ""},
      {R"(\b\d{6,}\b)", ""},
      {R"(\S+\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4))", ""},  // file names
      {R"(["']{2,})", "\""},
      {R"(\.{2,})", " "},
      {R"([#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]+)", " "},  // bad punctuation
      {R"(\s+\.\s+)", " "},
  });
  Substitutions after_basic_clean = compile({
      {R"(\b[a-zA-Z]{1,3}\d{3,15}\b)", ""},  // jc6640
      {R"(\b[a-zA-Z]+\d+[a-zA-Z]+\b)", ""},  // jc6640vc
      {R"(\b\d+[a-zA-Z]+\d+\b)", ""},        // 6640vc231
      {R"((worldwide\s+)?(free\s+)?shipping)", ""},
      {R"((free\s)?download(\sfree)?)", ""},
      {R"(\bclick\b\s(?:for|on)\s\w+)", ""},
      {R"(\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(\simage[s]?)?)", ""},
      {R"(\bpage\s+\d+\b)", ""},
      {R"(\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b)", " "},  // j2d1a2a
      {R"(\b\d+\.?\d*[xх×]\d+\.?\d*\b)", ""},                  // 1920x1080
      {R"(\b\s+\:\s+)", ": "},
      {R"((\D[,\./])\b)", "$1 "},
      {R"(\s+)", " "},
      {R"(^["']([\w\W]+)["']$)", "$1"},
      {R"(^['_,\-:;])", ""},
      {R"(['_,\-:\-+]$)", ""},
      {R"(^\.\S+$)", ""},
  });
};

// The patterns of Python 3.11's html.parser (and _markupbase) that the tokenizer below uses.
// Character and entity references end in a lookahead instead of consuming their terminator.
struct HtmlRegexes {
  Regex tag_name{R"(([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*)"};
  Regex attribute{R"(((?<=['"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?)"
                  R"((?:\s|/(?!>))*)"};
  Regex start_tag_end{R"(<[a-zA-Z][^\t\n\r\f />\x00]*(?:[\s/]*(?:(?<=['"\s/])[^\s/>][^\s/=>]*)"
                      R"((?:\s*=+\s*(?:'[^']*'|"[^"]*"|(?!['"])[^>\s]*)\s*)?(?:\s|/(?!>))*)*)?)"
                      R"(\s*)"};
  Regex end_tag{R"(</\s*([a-zA-Z][-.a-zA-Z0-9:_]*)\s*>)"};
  Regex comment_close{R"(--\s*>)"};
  Regex marked_section_close{R"(]\s*]\s*>)"};
  Regex ms_marked_section_close{R"(]\s*>)"};
  Regex declaration_name{R"(([a-zA-Z][-_.a-zA-Z0-9]*)\s*)"};
  Regex charref{R"(&#([0-9]+|[xX][0-9a-fA-F]+)(?=[^0-9a-fA-F]))"};
  Regex entityref{R"(&([a-zA-Z][-.a-zA-Z0-9]*)(?=[^a-zA-Z0-9]))"};
  // re.compile(r'</\s*script\s*>', re.I): Python's IGNORECASE also matches ſ for s, ı and İ
  // for i.
  Regex script_close{R"(</\s*[sSſ][cC][rR][iIıİ][pP][tT]\s*>)"};
  Regex style_close{R"(</\s*[sSſ][tT][yY][lL][eE]\s*>)"};
};

const CaptionRules& caption_rules() {
  static const CaptionRules rules;
  return rules;
}

const HtmlRegexes& html_regexes() {
  static const HtmlRegexes regexes;
  return regexes;
}

// ---------------------------------------------------------------------------------------------
// BeautifulSoup(text, "html.parser").text
// ---------------------------------------------------------------------------------------------

constexpr std::array<std::string_view, 24> kVoidElements = {
    "area",     "base", "basefont", "bgsound", "br",     "col",     "command", "embed",
    "frame",    "hr",   "image",    "img",     "input",  "isindex", "keygen",  "link",
    "menuitem", "meta", "nextid",   "param",   "source", "spacer",  "track",   "wbr"};
constexpr std::array<std::string_view, 2> kPreserveWhitespace = {"pre", "textarea"};
// BeautifulSoup gives their strings classes (Script, Stylesheet, ...) that .text leaves out.
constexpr std::array<std::string_view, 5> kStringContainers = {"rt", "rp", "style", "script",
                                                               "template"};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Windows-1252 for U+0080..U+009F (0: undefined), as BeautifulSoup maps numeric references.
constexpr std::array<char32_t, 32> kWindows1252 = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

// UnicodeDammit.numeric_character_reference for "&#<digits>" or "&#x<hex>".
std::string numeric_reference(std::string_view digits) {
  const bool hex = digits.front() == 'x' || digits.front() == 'X';
  char32_t value = 0;
  for (char c : hex ? digits.substr(1) : digits) {
    value = std::min<char32_t>(value * (hex ? 16 : 10) + hex_value(c), 0x110000);
  }
  if (value == 0 || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) value = 0xFFFD;
  if (value >= 0x80 && value <= 0x9F && kWindows1252[value - 0x80] != 0) {
    value = kWindows1252[value - 0x80];
  }
  return code_points_to_utf8(std::u32string(1, value));
}

// BeautifulSoup's HTML_ENTITY_TO_CHARACTER lookup, over html_unescape's entity subset: the name
// is known when html_unescape consumes all of "&name;" (its value never ends in ';').
std::optional<std::string> named_reference(std::string_view name) {
  std::string reference(1, '&');
  reference.append(name).push_back(';');
  std::string decoded = encoders::html_unescape(reference);
  if (decoded.ends_with(';')) return std::nullopt;
  return decoded;
}

// html.parser.HTMLParser (convert_charrefs=False, as bs4 sets it) fed the whole text, then
// closed, driving BeautifulSoup's tree builder; only what reaches .text is kept: the strings,
// and the open-tag stack that decides their class and whitespace handling.
class HtmlText {
 public:
  explicit HtmlText(std::string markup) : raw_(std::move(markup)) {}

  std::string extract() && {
    goahead(false);  // HTMLParser.feed
    goahead(true);   // HTMLParser.close
    end_data();
    return std::move(text_);
  }

 private:
  // Comments, doctypes and processing instructions make strings that .text leaves out, so only
  // their end_data() call is kept.
  enum class StringKind { text, cdata };

  // Where the tokenizer goes on from, and whether this goahead call stops there.
  struct Step {
    std::size_t next;
    bool stop;
  };

  bool starts_with(std::size_t i, std::string_view prefix) const {
    return std::string_view(raw_).substr(i).starts_with(prefix);
  }

  std::string_view slice(std::size_t begin, std::size_t end) const {
    return std::string_view(raw_).substr(begin, end > begin ? end - begin : 0);
  }

  void goahead(bool end) {
    std::size_t i = pos_;
    const std::size_t n = raw_.size();
    while (i < n) {
      std::size_t j = npos;
      if (cdata_close_ != nullptr) {
        const auto close = cdata_close_->search(raw_, i);
        if (!close) break;
        j = close->whole.begin;
      } else {
        j = std::min(raw_.find_first_of("<&", i), n);
      }
      if (i < j) data(slice(i, j));
      i = j;
      if (i == n) break;
      const Step step = raw_[i] == '<' ? markup(i, end) : reference(i, end);
      i = step.next;
      if (step.stop) break;
    }
    if (end && i < n && cdata_close_ == nullptr) {
      data(slice(i, n));
      i = n;
    }
    pos_ = i;
  }

  Step markup(std::size_t i, bool end) {
    const std::size_t n = raw_.size();
    std::ptrdiff_t k = -1;
    if (i + 1 < n && is_ascii_alpha(raw_[i + 1])) {
      k = parse_start_tag(i);
    } else if (starts_with(i, "</")) {
      k = parse_end_tag(i);
    } else if (starts_with(i, "<!--")) {
      k = parse_comment(i);
    } else if (starts_with(i, "<?")) {
      k = skip_markup(i + 2);  // processing instruction
    } else if (starts_with(i, "<!")) {
      k = parse_declaration(i);
    } else if (i + 1 < n) {
      data("<");
      k = static_cast<std::ptrdiff_t>(i + 1);
    } else {
      return {i, true};
    }
    if (k >= 0) return {static_cast<std::size_t>(k), false};
    if (!end) return {i, true};  // incomplete: feed waits for more text
    // close(): the incomplete construct is text up to its '>', else up to the next '<'.
    const std::size_t gt = raw_.find('>', i + 1), lt = raw_.find('<', i + 1);
    const std::size_t stop = gt != npos ? gt + 1 : lt != npos ? lt : i + 1;
    data(slice(i, stop));
    return {stop, false};
  }

  Step reference(std::size_t i, bool end) {
    const HtmlRegexes& re = html_regexes();
    const std::size_t n = raw_.size();
    if (starts_with(i, "&#")) {
      if (const auto ref = re.charref.match(raw_, i)) {
        data(numeric_reference(slice(ref->group.begin, ref->group.end)));
        return {past_semicolon(ref->whole.end), false};
      }
      if (raw_.find(';', i) == npos) return {i, true};
      data("&#");  // html.parser gives up on the rest of this goahead call
      return {i + 2, true};
    }
    if (const auto ref = re.entityref.match(raw_, i)) {
      const std::string_view name = slice(ref->group.begin, ref->group.end);
      // An unknown name stays as "&name"; its ';' is consumed all the same.
      data(named_reference(name).value_or(std::string(1, '&').append(name)));
      return {past_semicolon(ref->whole.end), false};
    }
    if (i + 1 < n && is_ascii_alpha(raw_[i + 1])) {
      // "&name" at the very end: close() drops the '&' and keeps the rest as text.
      return {end && i + 2 == n ? i + 1 : i, true};
    }
    if (i + 1 < n) {
      data("&");
      return {i + 1, false};
    }
    return {i, true};
  }

  std::size_t past_semicolon(std::size_t i) const {
    return i < raw_.size() && raw_[i] == ';' ? i + 1 : i;
  }

  // HTMLParser.check_for_whole_start_tag: the end of the tag, or -1 while it may be incomplete.
  std::ptrdiff_t start_tag_end(std::size_t i) const {
    const std::size_t j = html_regexes().start_tag_end.match(raw_, i)->whole.end;
    if (j == raw_.size()) return -1;
    const char next = raw_[j];
    if (next == '>') return static_cast<std::ptrdiff_t>(j + 1);
    if (next == '/') return starts_with(j, "/>") ? static_cast<std::ptrdiff_t>(j + 2) : -1;
    if (is_ascii_alpha(next) || next == '=') return -1;
    return static_cast<std::ptrdiff_t>(j);
  }

  std::ptrdiff_t parse_start_tag(std::size_t i) {
    const std::ptrdiff_t end_pos = start_tag_end(i);
    if (end_pos < 0) return end_pos;
    const auto end = static_cast<std::size_t>(end_pos);
    const HtmlRegexes& re = html_regexes();
    const Match name = *re.tag_name.match(raw_, i + 1);
    std::size_t k = name.whole.end;
    while (k < end) {
      const auto attribute = re.attribute.match(raw_, k);
      if (!attribute) break;
      k = attribute->whole.end;
    }
    const std::string rest = python_strip(slice(k, end));
    if (rest != ">" && rest != "/>") {
      data(slice(i, end));
      return end_pos;
    }
    const std::string tag = python_lower(slice(name.group.begin, name.group.end));
    start_tag(tag, rest == "/>");
    if (rest == ">" && (tag == "script" || tag == "style")) {
      cdata_close_ = tag == "script" ? &re.script_close : &re.style_close;
    }
    return end_pos;
  }

  std::ptrdiff_t parse_end_tag(std::size_t i) {
    const std::size_t gt = raw_.find('>', i + 1);
    if (gt == npos) return -1;
    const auto after = static_cast<std::ptrdiff_t>(gt + 1);
    const HtmlRegexes& re = html_regexes();
    std::optional<Match> name = re.end_tag.match(raw_, i);
    if (!name) {
      if (cdata_close_ != nullptr) {  // "</ſcript>": the close pattern matched, this one not
        data(slice(i, gt + 1));
        return after;
      }
      name = re.tag_name.match(raw_, i + 2);
      if (!name) return starts_with(i, "</>") ? after : skip_markup(i + 2);  // bogus comment
    }
    end_tag(python_lower(slice(name->group.begin, name->group.end)));
    cdata_close_ = nullptr;
    return after;
  }

  std::ptrdiff_t parse_comment(std::size_t i) {
    const auto close = html_regexes().comment_close.search(raw_, i + 4);
    if (!close) return -1;
    end_data();
    return static_cast<std::ptrdiff_t>(close->whole.end);
  }

  // Processing instructions, doctypes and bogus comments, whose strings .text leaves out: they
  // end at the first '>' from `search_from`.
  std::ptrdiff_t skip_markup(std::size_t search_from) {
    const std::size_t gt = raw_.find('>', search_from);
    if (gt == npos) return -1;
    end_data();
    return static_cast<std::ptrdiff_t>(gt + 1);
  }

  std::ptrdiff_t parse_declaration(std::size_t i) {
    if (starts_with(i, "<![")) return parse_marked_section(i);
    return skip_markup(ascii_lower(slice(i, i + 9)) == "<!doctype" ? i + 9 : i + 2);
  }

  // _markupbase.parse_marked_section: <![CDATA[...]]> is text; <![if ...]> and the like are not.
  std::ptrdiff_t parse_marked_section(std::size_t i) {
    const HtmlRegexes& re = html_regexes();
    const std::size_t start = i + 3;
    if (start == raw_.size()) return -1;
    const auto name = re.declaration_name.match(raw_, start);
    if (!name) reject("expected name token");
    if (name->whole.end == raw_.size()) return -1;
    const std::string keyword = ascii_lower(slice(name->group.begin, name->group.end));
    const Regex* close = nullptr;
    if (keyword == "temp" || keyword == "cdata" || keyword == "ignore" || keyword == "include" ||
        keyword == "rcdata") {
      close = &re.marked_section_close;
    } else if (keyword == "if" || keyword == "else" || keyword == "endif") {
      close = &re.ms_marked_section_close;
    } else {
      reject("unknown status keyword in marked section");
    }
    const auto end = close->search(raw_, start);
    if (!end) return -1;
    const std::string_view content = slice(start, end->whole.begin);
    end_data();
    if (ascii_lower(content.substr(0, 6)) == "cdata[") {
      data(content.substr(6));
      end_data(StringKind::cdata);
    }
    return static_cast<std::ptrdiff_t>(end->whole.end);
  }

  [[noreturn]] static void reject(std::string_view why) {
    throw std::runtime_error("clean_caption: html.parser rejects the caption's markup (" +
                             std::string(why) + "), as BeautifulSoup's ParserRejectedMarkup");
  }

  // --- BeautifulSoup's tree builder ---

  void data(std::string_view text) {
    if (pending_) {
      pending_->append(text);
    } else {
      pending_.emplace(text);
    }
  }

  // BeautifulSoup.endData: a pending string (even an empty one) becomes a node.
  void end_data(StringKind kind = StringKind::text) {
    if (!pending_) return;
    std::string text = std::move(*pending_);
    pending_.reset();
    if (!inside(kPreserveWhitespace) && is_ascii_space_only(text)) {
      text = text.find('\n') != npos ? "\n" : " ";
    }
    if (kind == StringKind::cdata || !inside(kStringContainers)) {
      text_ += text;
    }
  }

  template <std::size_t N>
  bool inside(const std::array<std::string_view, N>& names) const {
    return std::any_of(open_.begin(), open_.end(),
                       [&](const std::string& tag) { return contains(names, tag); });
  }

  // A void element closes at once (unless written <x/>, which closes anyway), and its explicit
  // end tag is then ignored once.
  void start_tag(const std::string& name, bool self_closing) {
    end_data();
    open_.push_back(name);
    if (self_closing || contains(kVoidElements, name)) close_tag(name);
    if (!self_closing && contains(kVoidElements, name)) closed_voids_.push_back(name);
  }

  void end_tag(const std::string& name) {
    const auto closed = std::find(closed_voids_.begin(), closed_voids_.end(), name);
    if (closed != closed_voids_.end()) {
      closed_voids_.erase(closed);
      return;
    }
    close_tag(name);
  }

  // Pops the open tags up to the most recent one of this name, if any is open.
  void close_tag(const std::string& name) {
    end_data();
    const auto open = std::find(open_.rbegin(), open_.rend(), name);
    if (open != open_.rend()) open_.erase(std::prev(open.base()), open_.end());
  }

  std::string raw_;
  std::size_t pos_ = 0;                    // what feed left for close
  const Regex* cdata_close_ = nullptr;     // inside <script> or <style>: the end-tag pattern
  std::optional<std::string> pending_;     // BeautifulSoup's current_data
  std::vector<std::string> open_;          // BeautifulSoup's tagStack, root left out
  std::vector<std::string> closed_voids_;  // already_closed_empty_element
  std::string text_;
};

// ---------------------------------------------------------------------------------------------
// One logic pass
// ---------------------------------------------------------------------------------------------

// this-is-my-cute-cat / this_is_my_cute_cat: more than three separators in all become spaces.
std::string split_slug(std::string text) {
  if (std::count_if(text.begin(), text.end(), [](char c) { return c == '-' || c == '_'; }) > 3) {
    std::replace(text.begin(), text.end(), '-', ' ');
    std::replace(text.begin(), text.end(), '_', ' ');
  }
  return text;
}

std::string basic_clean(std::string_view text) {
  const std::string fixed = encoders::ftfy_fix_text(text);
  return python_strip(encoders::html_unescape(encoders::html_unescape(fixed)));
}

std::string clean_pass(std::string_view caption) {
  const CaptionRules& rules = caption_rules();
  std::string text = python_lower(python_strip(unquote_plus(caption)));
  text = substitute_all(rules.before_html, std::move(text));
  text = HtmlText(std::move(text)).extract();
  text = substitute_all(rules.before_basic_clean, std::move(text));
  text = basic_clean(split_slug(std::move(text)));
  return python_strip(substitute_all(rules.after_basic_clean, std::move(text)));
}

}  // namespace

std::string clean_caption_once(std::string_view caption) { return clean_pass(caption); }

#else  // no PCRE2

std::string clean_caption_once(std::string_view) {
  throw std::runtime_error(
      "clean_caption: the caption cleaner needs PCRE2 (libpcre2-dev); this build has none");
}

#endif

std::string clean_caption(std::string_view caption) {
  return clean_caption_once(clean_caption_once(caption));
}

}  // namespace microdit::data
