// CLIP byte-level BPE tokenizer, open_clip and HF flavours (see clip_tokenizer.h).
#include "microdit/encoders/clip_tokenizer.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>

#include <array>
#include <climits>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "microdit/encoders/text_clean.h"
#include "microdit/io/json.h"
#include "microdit/io/read_file.h"

#ifdef MICRODIT_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif
#ifdef MICRODIT_HAVE_ZLIB
#include <zlib.h>
#endif

namespace microdit::encoders {

namespace {

constexpr std::size_t kMergeCount = 49152 - 256 - 2;  // merges file lines 1..48894
constexpr std::size_t kMaxCachedWords = 1 << 18;
// The real files are under 2 MiB (bpe_simple_vocab_16e6.txt 1.3 MB gunzipped, vocab.json and
// merges.txt of HF's CLIP repositories 0.9 and 0.5 MB); a gzip bomb stops here.
constexpr std::size_t kMaxVocabularyBytes = std::size_t{64} << 20;

// Both implementations match specials first, then the same classes. `\s` is spelled out as the
// White_Space set of Python's regex module (PCRE2's \s adds U+180E), and U+0345 is excluded from
// the last class: with IGNORECASE, Python's regex module folds it to iota, a letter, so no
// alternative matches it and it is dropped.
constexpr std::string_view kPatternBody =
    R"('s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|)"
    R"([^\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F})"
    R"(\x{3000}\x{345}\p{L}\p{N}]+)";
constexpr std::string_view kOpenClipStart = "<start_of_text>", kOpenClipEnd = "<end_of_text>";
constexpr std::string_view kHfStart = "<|startoftext|>", kHfEnd = "<|endoftext|>";

void require_pcre2() {
#ifndef MICRODIT_HAVE_PCRE2
  throw std::runtime_error(
      "CLIPTokenizer: the CLIP tokenizer needs PCRE2 (libpcre2-dev); this build has none");
#endif
}

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw std::runtime_error(c10::str("CLIPTokenizer: ", path.string(), ": ", what));
}

std::string read_file(const std::filesystem::path& path) {
  try {
    return io::read_file(path, kMaxVocabularyBytes, "a vocabulary file");
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(c10::str("CLIPTokenizer: cannot open vocabulary file ", e.what()));
  }
}

bool is_gzip(std::string_view data) {
  return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
         static_cast<unsigned char>(data[1]) == 0x8b;
}

std::string gunzip(const std::string& data, const std::filesystem::path& path) {
#ifdef MICRODIT_HAVE_ZLIB
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail(path, "zlib inflateInit2 failed");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  std::array<char, 1 << 16> buffer;
  int rc = Z_OK;
  while (rc == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer.data());
    stream.avail_out = static_cast<uInt>(buffer.size());
    rc = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer.data(), buffer.size() - stream.avail_out);
    if (out.size() > kMaxVocabularyBytes) {
      inflateEnd(&stream);
      fail(path, c10::str("decompresses to more than ", kMaxVocabularyBytes,
                          " bytes, the limit for a vocabulary file (a gzip bomb?)"));
    }
    if (rc == Z_BUF_ERROR && stream.avail_in == 0) break;
  }
  const std::string message = stream.msg ? stream.msg : "";
  inflateEnd(&stream);
  if (rc == Z_STREAM_END) return out;
  if (rc == Z_BUF_ERROR || rc == Z_OK) fail(path, "gzip data is truncated");
  fail(path, c10::str("not valid gzip data (zlib: ", message.empty() ? zError(rc) : message, ")"));
#else
  (void)data;
  fail(path, "is gzip-compressed and this build has no zlib (zlib1g-dev); pass it gunzipped");
#endif
}

// Python's str.split(): fields separated by runs of Unicode whitespace.
std::vector<std::string> split_python(std::string_view line) {
  std::vector<std::string> fields;
  std::u32string field;
  for (char32_t c : utf8_to_code_points(line)) {
    if (is_python_space(c)) {
      if (!field.empty()) fields.push_back(code_points_to_utf8(field));
      field.clear();
    } else {
      field += c;
    }
  }
  if (!field.empty()) fields.push_back(code_points_to_utf8(field));
  return fields;
}

void require_utf8(const std::string& text, const std::filesystem::path& path) {
  const std::string round_trip = code_points_to_utf8(utf8_to_code_points(text));
  if (round_trip == text) return;
  std::size_t at = 0;
  while (at < text.size() && at < round_trip.size() && text[at] == round_trip[at]) ++at;
  fail(path, c10::str("not valid UTF-8 (byte offset ", at, ")"));
}

// Lines 1..48894 of the merges text (line 0 is a header), each split into its two symbols.
std::vector<std::pair<std::string, std::string>> parse_merges(std::string_view text,
                                                              const std::filesystem::path& path) {
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kMergeCount);
  std::size_t pos = text.find('\n');
  std::size_t line_number = 1;
  while (pos != std::string_view::npos && merges.size() < kMergeCount) {
    const std::size_t start = pos + 1;
    pos = text.find('\n', start);
    const std::string_view line =
        text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
    std::vector<std::string> fields = split_python(line);
    if (fields.empty() && text.find_first_not_of(" \t\n\r\v\f", start) == text.npos) break;
    if (fields.size() != 2) {
      fail(path, c10::str("line ", line_number + 1, " has ", fields.size(),
                          " fields, expected a merge of two symbols"));
    }
    merges.emplace_back(std::move(fields[0]), std::move(fields[1]));
    ++line_number;
  }
  if (merges.size() < kMergeCount) {
    fail(path, c10::str("has ", merges.size(), " merge lines after the header, expected ",
                        kMergeCount, " (a truncated or wrong vocabulary file)"));
  }
  return merges;
}

// GPT-2/CLIP bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
// bytes, in increasing order, for U+0100, U+0101, ...
bool is_printable_byte(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

std::array<std::string, 256> byte_symbols() {
  std::array<std::string, 256> symbols;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    symbols[b] =
        code_points_to_utf8(std::u32string(1, is_printable_byte(b) ? char32_t(b) : next++));
  }
  return symbols;
}

std::vector<std::string> open_clip_tokens(
    const std::vector<std::pair<std::string, std::string>>& merges) {
  const std::array<std::string, 256> bytes = byte_symbols();
  // bytes_to_unicode's dict order: the printable bytes first, then the others.
  std::vector<int> order;
  for (bool printable : {true, false}) {
    for (int b = 0; b < 256; ++b) {
      if (is_printable_byte(b) == printable) order.push_back(b);
    }
  }
  std::vector<std::string> tokens;
  tokens.reserve(512 + merges.size() + 2);
  for (int b : order) tokens.push_back(bytes[b]);
  for (int b : order) tokens.push_back(bytes[b] + "</w>");
  for (const auto& [a, b] : merges) tokens.push_back(a + b);
  tokens.emplace_back(kOpenClipStart);
  tokens.emplace_back(kOpenClipEnd);
  return tokens;
}

std::vector<int64_t> pad_row(std::vector<int64_t> ids, int64_t length, int64_t pad) {
  ids.resize(static_cast<std::size_t>(length), pad);
  return ids;
}

}  // namespace

CLIPVocabulary read_open_clip_vocabulary(const std::filesystem::path& path) {
  return parse_open_clip_vocabulary(read_file(path), path);
}

CLIPVocabulary parse_open_clip_vocabulary(std::string text, const std::filesystem::path& path) {
  if (is_gzip(text)) text = gunzip(text, path);
  require_utf8(text, path);
  CLIPVocabulary vocabulary;
  vocabulary.merges = parse_merges(text, path);
  vocabulary.tokens = open_clip_tokens(vocabulary.merges);
  return vocabulary;
}

void write_hf_vocabulary(const CLIPVocabulary& vocabulary, const std::filesystem::path& vocab_json,
                         const std::filesystem::path& merges_txt) {
  // A JSON object keeps one id per token; as in a Python dict, the last id of a repeated token.
  std::unordered_map<std::string_view, std::size_t> last;
  for (std::size_t id = 0; id < vocabulary.tokens.size(); ++id) last[vocabulary.tokens[id]] = id;
  std::string json = "{";
  for (std::size_t id = 0; id < vocabulary.tokens.size(); ++id) {
    std::string_view token = vocabulary.tokens[id];
    if (last[token] != id) continue;
    if (token == kOpenClipStart) token = kHfStart;
    if (token == kOpenClipEnd) token = kHfEnd;
    if (json.size() > 1) json += ',';
    json += c10::str(io::Json(token).dump(), ":", id);
  }
  json += "}";
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : vocabulary.merges) merges += c10::str(a, " ", b, "\n");
  for (const auto& [path, data] : {std::pair{vocab_json, &json}, std::pair{merges_txt, &merges}}) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << *data;
    out.close();
    if (!out) throw std::runtime_error(c10::str("CLIPTokenizer: cannot write ", path.string()));
  }
}

// ---- Tokenizer -----------------------------------------------------------------------------

struct CLIPTokenizer::Impl {
  Mode mode = Mode::open_clip;
  std::string start_text, end_text;  // special token spellings in this flavour
  int64_t start_id = 0, end_id = 0, pad_id = 0, vocab_size = 0;
  std::array<int64_t, 256> byte_id{}, byte_end_id{};  // byte symbol, byte symbol + "</w>"
  struct Merge {
    int64_t rank;
    int64_t merged_id;
  };
  std::unordered_map<uint64_t, Merge> merges;  // key: (left id << 32) | right id

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;  // piece -> ids

#ifdef MICRODIT_HAVE_PCRE2
  struct CodeDeleter {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  std::unique_ptr<pcre2_code, CodeDeleter> pattern;
#endif

  Impl(Mode mode_, const std::unordered_map<std::string, int64_t>& encoder,
       const std::vector<std::pair<std::string, std::string>>& merge_list,
       const std::filesystem::path& source);

  void compile_pattern();
  // The pre-tokenizer's pieces of a cleaned text, in order.
  std::vector<std::string> pieces(const std::string& cleaned) const;
  void append_piece(const std::string& piece, std::vector<int64_t>& ids) const;
  std::vector<int64_t> bpe(const std::string& piece) const;
  void append_cleaned(const std::string& text, std::vector<int64_t>& ids) const;
};

CLIPTokenizer::Impl::Impl(Mode mode_, const std::unordered_map<std::string, int64_t>& encoder,
                          const std::vector<std::pair<std::string, std::string>>& merge_list,
                          const std::filesystem::path& source)
    : mode(mode_) {
  start_text = mode == Mode::open_clip ? kOpenClipStart : kHfStart;
  end_text = mode == Mode::open_clip ? kOpenClipEnd : kHfEnd;
  const auto id_of = [&](const std::string& token, std::string_view what) {
    auto it = encoder.find(token);
    if (it == encoder.end()) {
      fail(source, c10::str(what, " \"", token, "\" is not in the vocabulary"));
    }
    return it->second;
  };
  start_id = id_of(start_text, "start token");
  end_id = id_of(end_text, "end token");
  pad_id = mode == Mode::open_clip ? 0 : end_id;
  vocab_size = static_cast<int64_t>(encoder.size());
  const std::array<std::string, 256> bytes = byte_symbols();
  for (int b = 0; b < 256; ++b) {
    byte_id[b] = id_of(bytes[b], "byte symbol");
    byte_end_id[b] = id_of(bytes[b] + "</w>", "byte symbol");
  }
  merges.reserve(merge_list.size());
  for (std::size_t rank = 0; rank < merge_list.size(); ++rank) {
    const auto& [a, b] = merge_list[rank];
    const std::string what = c10::str("merge ", rank + 1, " (\"", a, " ", b, "\"): symbol");
    const uint64_t key =
        (static_cast<uint64_t>(id_of(a, what)) << 32) | static_cast<uint64_t>(id_of(b, what));
    // As Python's dict(zip(merges, range(...))): a repeated pair keeps its last rank.
    merges[key] = Merge{static_cast<int64_t>(rank), id_of(a + b, what)};
  }
  compile_pattern();
}

void CLIPTokenizer::Impl::compile_pattern() {
#ifdef MICRODIT_HAVE_PCRE2
  const std::string source = mode == Mode::open_clip
                                 ? c10::str(kOpenClipStart, "|", kOpenClipEnd, "|", kPatternBody)
                                 : c10::str(R"(<\|startoftext\|>|<\|endoftext\|>|)", kPatternBody);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pattern.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS, &error, &offset, nullptr));
  if (!pattern) {
    std::array<PCRE2_UCHAR, 256> message{};
    pcre2_get_error_message(error, message.data(), message.size());
    throw std::runtime_error(c10::str("CLIPTokenizer: PCRE2 rejects the pre-tokenizer pattern at ",
                                      offset, ": ", reinterpret_cast<const char*>(message.data())));
  }
  pcre2_jit_compile(pattern.get(), PCRE2_JIT_COMPLETE);  // optional speed-up; falls back silently
#endif
}

std::vector<std::string> CLIPTokenizer::Impl::pieces(const std::string& cleaned) const {
  std::vector<std::string> out;
#ifdef MICRODIT_HAVE_PCRE2
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(pattern.get(), nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(cleaned.data());
  uint32_t options = 0;  // the first call checks the UTF-8 once
  for (PCRE2_SIZE offset = 0; offset < cleaned.size();) {
    int rc =
        pcre2_match(pattern.get(), subject, cleaned.size(), offset, options, match.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(pattern.get(), subject, cleaned.size(), offset, options | PCRE2_NO_JIT,
                       match.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(rc, message.data(), message.size());
      throw std::runtime_error(c10::str("CLIPTokenizer: PCRE2 match failed: ",
                                        reinterpret_cast<const char*>(message.data())));
    }
    options = PCRE2_NO_UTF_CHECK;
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
    out.emplace_back(cleaned, span[0], span[1] - span[0]);
    offset = span[1] > span[0] ? span[1] : span[0] + 1;  // no alternative matches empty text
  }
#else
  (void)cleaned;
#endif
  return out;
}

std::vector<int64_t> CLIPTokenizer::Impl::bpe(const std::string& piece) const {
  std::vector<int64_t> word(piece.size());
  for (std::size_t i = 0; i < piece.size(); ++i) {
    const auto byte = static_cast<unsigned char>(piece[i]);
    word[i] = i + 1 < piece.size() ? byte_id[byte] : byte_end_id[byte];
  }
  while (word.size() > 1) {
    // The adjacent pair of lowest rank; then every occurrence of it merges, left to right.
    const Merge* best = nullptr;
    uint64_t best_key = 0;
    for (std::size_t i = 0; i + 1 < word.size(); ++i) {
      const uint64_t key =
          (static_cast<uint64_t>(word[i]) << 32) | static_cast<uint64_t>(word[i + 1]);
      auto it = merges.find(key);
      if (it != merges.end() && (best == nullptr || it->second.rank < best->rank)) {
        best = &it->second;
        best_key = key;
      }
    }
    if (best == nullptr) break;
    const auto first = static_cast<int64_t>(best_key >> 32);
    const auto second = static_cast<int64_t>(best_key & 0xffffffffu);
    std::vector<int64_t> merged;
    merged.reserve(word.size());
    for (std::size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(best->merged_id);
        ++i;
      } else {
        merged.push_back(word[i]);
      }
    }
    word = std::move(merged);
  }
  return word;
}

void CLIPTokenizer::Impl::append_piece(const std::string& piece, std::vector<int64_t>& ids) const {
  if (piece == start_text) {
    ids.push_back(start_id);
    return;
  }
  if (piece == end_text) {
    ids.push_back(end_id);
    return;
  }
  {
    std::scoped_lock lock(cache_mutex);
    auto it = cache.find(piece);
    if (it != cache.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> word = bpe(piece);
  ids.insert(ids.end(), word.begin(), word.end());
  std::scoped_lock lock(cache_mutex);
  if (cache.size() >= kMaxCachedWords) cache.clear();
  cache.emplace(piece, std::move(word));
}

void CLIPTokenizer::Impl::append_cleaned(const std::string& text, std::vector<int64_t>& ids) const {
  const std::string cleaned = mode == Mode::open_clip ? clean_open_clip(text) : clean_hf(text);
  for (const std::string& piece : pieces(cleaned)) append_piece(piece, ids);
}

// ---- Construction --------------------------------------------------------------------------

CLIPTokenizer::CLIPTokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

CLIPTokenizer CLIPTokenizer::open_clip(const std::filesystem::path& bpe_vocab) {
  require_pcre2();
  const CLIPVocabulary vocabulary = read_open_clip_vocabulary(bpe_vocab);
  std::unordered_map<std::string, int64_t> encoder;
  encoder.reserve(vocabulary.tokens.size());
  for (std::size_t id = 0; id < vocabulary.tokens.size(); ++id) {
    encoder[vocabulary.tokens[id]] = static_cast<int64_t>(id);  // a repeated token: last id
  }
  return CLIPTokenizer(
      std::make_shared<Impl>(Mode::open_clip, encoder, vocabulary.merges, bpe_vocab));
}

CLIPTokenizer CLIPTokenizer::hf(const std::filesystem::path& vocab_json,
                                const std::filesystem::path& merges_txt) {
  require_pcre2();
  const std::string vocab_text = read_file(vocab_json);
  const io::Json vocab =
      io::parse_json(vocab_text, c10::str("CLIPTokenizer: ", vocab_json.string()));
  if (!vocab.is_object())
    fail(vocab_json, c10::str("expected a JSON object, got ", io::json_type_name(vocab)));
  std::unordered_map<std::string, int64_t> encoder;
  encoder.reserve(vocab.size());
  for (const auto& [token, id] : io::json_to_object(vocab)) {
    const auto n = io::json_int64(id);
    if (!n || *n < 0 || *n > INT32_MAX) {
      fail(vocab_json, c10::str("token \"", token, "\" has id ", id.dump(),
                                ", expected an integer in [0, 2^31)"));
    }
    encoder.emplace(token, *n);
  }
  // transformers reads merges.txt as read().strip().split("\n")[1:48895].
  std::string merges_text = read_file(merges_txt);
  require_utf8(merges_text, merges_txt);
  const std::u32string code_points = utf8_to_code_points(merges_text);
  std::size_t first = 0, last = code_points.size();
  while (first < last && is_python_space(code_points[first])) ++first;
  while (last > first && is_python_space(code_points[last - 1])) --last;
  merges_text = code_points_to_utf8(std::u32string_view(code_points).substr(first, last - first));
  const auto merges = parse_merges(merges_text, merges_txt);
  return CLIPTokenizer(std::make_shared<Impl>(Mode::hf, encoder, merges, vocab_json));
}

// ---- Public API ----------------------------------------------------------------------------

std::vector<int64_t> CLIPTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  if (impl_->mode == Mode::open_clip) {
    impl_->append_cleaned(text, ids);
    return ids;
  }
  // HF splits its special tokens out of the raw text first (the added-tokens trie), then cleans
  // and tokenizes each remaining piece on its own.
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t at = std::string::npos, length = 0;
    int64_t special = 0;
    for (const auto& [spelling, id] : {std::pair{std::string_view(kHfStart), impl_->start_id},
                                       std::pair{std::string_view(kHfEnd), impl_->end_id}}) {
      const std::size_t found = text.find(spelling, pos);
      if (found < at) {
        at = found;
        length = spelling.size();
        special = id;
      }
    }
    const std::size_t end = at == std::string::npos ? text.size() : at;
    if (end > pos) impl_->append_cleaned(text.substr(pos, end - pos), ids);
    if (at == std::string::npos) break;
    ids.push_back(special);
    pos = at + length;
  }
  return ids;
}

at::Tensor CLIPTokenizer::tokenize(const std::vector<std::string>& texts,
                                   int64_t context_length) const {
  if (context_length < 2) {
    throw std::invalid_argument(
        c10::str("CLIPTokenizer::tokenize: context_length must be at least 2 (start and end), got ",
                 context_length));
  }
  const auto rows = static_cast<int64_t>(texts.size());
  at::Tensor out = at::empty({rows, context_length}, at::kLong);  // (N, L)
  int64_t* data = out.data_ptr<int64_t>();
  for (int64_t n = 0; n < rows; ++n) {
    std::vector<int64_t> content = encode(texts[n]);
    std::vector<int64_t> row;
    row.reserve(static_cast<std::size_t>(context_length));
    row.push_back(impl_->start_id);
    // open_clip cuts [sot] + tokens + [eot] to L and sets the last to eot; HF cuts the tokens
    // to L - 2 before adding both specials. Either way: L - 2 tokens, then eot.
    const auto kept = std::min<std::size_t>(content.size(), context_length - 2);
    row.insert(row.end(), content.begin(), content.begin() + kept);
    row.push_back(impl_->end_id);
    row = pad_row(std::move(row), context_length, impl_->pad_id);
    std::copy(row.begin(), row.end(), data + n * context_length);
  }
  return out;
}

CLIPTokenizer::Mode CLIPTokenizer::mode() const { return impl_->mode; }
int64_t CLIPTokenizer::start_id() const { return impl_->start_id; }
int64_t CLIPTokenizer::end_id() const { return impl_->end_id; }
int64_t CLIPTokenizer::pad_id() const { return impl_->pad_id; }
int64_t CLIPTokenizer::vocab_size() const { return impl_->vocab_size; }

}  // namespace microdit::encoders
