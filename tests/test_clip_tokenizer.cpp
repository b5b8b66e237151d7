// CLIPTokenizer (open_clip and HF flavours) and the caption cleaning against the Python
// references: tests/data/tokenizer/, written by scripts/reference/make_tokenizer_reference.py
// with open_clip's SimpleTokenizer, transformers' CLIPTokenizer and ftfy.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "microdit/encoders/clip_tokenizer.h"
#include "microdit/encoders/text_clean.h"
#include "microdit/io/json.h"
#include "test_one_line.h"
#include "test_support.h"

#ifdef MICRODIT_HAVE_ZLIB
#include <zlib.h>
#endif

namespace microdit::encoders {
namespace {

namespace fs = std::filesystem;
const fs::path kData = test::source_dir() / "tests" / "data" / "tokenizer";
const fs::path kVocab = kData / "bpe_simple_vocab_16e6.txt.gz";
constexpr int64_t kStart = 49406, kEnd = 49407, kLength = 77;

std::vector<io::Json> read_jsonl(const fs::path& path) {
  std::vector<io::Json> records;
  std::istringstream lines(test::read_bytes(path));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) records.push_back(io::parse_json(line, "test"));
  }
  return records;
}

std::vector<int64_t> ids_of(const io::Json& array) {
  std::vector<int64_t> ids;
  for (const io::Json& id : array) ids.push_back(id.get<int64_t>());
  return ids;
}

std::vector<int64_t> row_of(const at::Tensor& tokens, int64_t n) {
  const at::Tensor row = tokens[n].contiguous();
  return {row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel()};
}

std::vector<int64_t> padded(std::vector<int64_t> ids, int64_t pad) {
  ids.resize(kLength, pad);
  return ids;
}

// A directory under the system temp dir, removed with the object.
// Both flavours on the committed vocabulary: open_clip reads the .gz, HF reads vocab.json and
// merges.txt derived from it, as the reference script does for transformers.
struct Tokenizers {
  test::TempDir dir{"clip_tokenizer"};
  CLIPTokenizer open_clip = CLIPTokenizer::open_clip(kVocab);
  CLIPTokenizer hf = [this] {
    write_hf_vocabulary(read_open_clip_vocabulary(kVocab), dir.path / "vocab.json",
                        dir.path / "merges.txt");
    return CLIPTokenizer::hf(dir.path / "vocab.json", dir.path / "merges.txt");
  }();
};

// The message of a build without PCRE2 or zlib, which cannot read the committed vocabulary;
// empty when the tokenizer works.
std::string missing_library() {
  try {
    CLIPTokenizer::open_clip(kVocab);
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    if (message.find("needs PCRE2") != std::string::npos ||
        message.find("no zlib") != std::string::npos) {
      return message;
    }
  }
  return "";
}

const std::string& why_unavailable() {
  static const std::string why = missing_library();
  return why;
}

#define SKIP_WITHOUT_LIBRARIES() \
  if (!why_unavailable().empty()) GTEST_SKIP() << why_unavailable()

const Tokenizers& tokenizers() {
  static const Tokenizers instance;
  return instance;
}

// Passes when `f` throws a std::exception whose message contains every piece.
testing::AssertionResult throws_with(const std::function<void()>& f,
                                     std::initializer_list<std::string> pieces) {
  return test::throws_with<std::exception>(f, "", pieces);
}

// ---- Parity with the references ------------------------------------------------------------

// Every corpus string gives exactly the tokens of the reference whose cleaning is our subset's
// Python mirror; where the subset agrees with ftfy (and html.unescape), those are the real
// open_clip / HF tokens.
TEST(CLIPTokenizer, CorpusMatchesOpenClipAndHF) {
  SKIP_WITHOUT_LIBRARIES();
  const std::vector<io::Json> corpus = read_jsonl(kData / "corpus.jsonl");
  ASSERT_GE(corpus.size(), 1000u);
  std::vector<std::string> texts;
  for (const io::Json& record : corpus) texts.push_back(record.at("text").get<std::string>());
  const at::Tensor oc = tokenizers().open_clip.tokenize(texts);  // (N, 77)
  const at::Tensor hf = tokenizers().hf.tokenize(texts);
  ASSERT_EQ(oc.sizes(), (at::IntArrayRef{static_cast<int64_t>(texts.size()), kLength}));
  ASSERT_EQ(oc.scalar_type(), at::kLong);
  ASSERT_EQ(hf.sizes(), oc.sizes());

  int oc_agree = 0, hf_agree = 0, both_agree = 0, oc_mismatch = 0, hf_mismatch = 0;
  for (std::size_t n = 0; n < corpus.size(); ++n) {
    const io::Json& record = corpus[n];
    const std::vector<int64_t> oc_ref = ids_of(record.at("oc"));
    const std::vector<int64_t> hf_ref = record.contains("hf") ? ids_of(record.at("hf")) : oc_ref;
    const std::vector<int64_t> oc_sub =
        record.contains("oc_sub") ? ids_of(record.at("oc_sub")) : oc_ref;
    const std::vector<int64_t> hf_sub =
        record.contains("hf_sub") ? ids_of(record.at("hf_sub")) : hf_ref;
    const bool oc_ok = record.at("oc_ok").get<bool>(), hf_ok = record.at("hf_ok").get<bool>();

    const std::vector<int64_t> oc_row = row_of(oc, n), hf_row = row_of(hf, n);
    oc_mismatch += oc_row != padded(oc_sub, 0);
    hf_mismatch += hf_row != padded(hf_sub, kEnd);
    EXPECT_EQ(oc_row, padded(oc_sub, 0))
        << "open_clip, corpus line " << n + 1 << ": " << testing::PrintToString(texts[n]);
    EXPECT_EQ(hf_row, padded(hf_sub, kEnd))
        << "hf, corpus line " << n + 1 << ": " << testing::PrintToString(texts[n]);
    if (oc_ok) {
      EXPECT_EQ(oc_row, padded(oc_ref, 0)) << "line " << n + 1;
    }
    if (hf_ok) {
      EXPECT_EQ(hf_row, padded(hf_ref, kEnd)) << "line " << n + 1;
    }
    oc_agree += oc_ok && oc_row == padded(oc_ref, 0);
    hf_agree += hf_ok && hf_row == padded(hf_ref, kEnd);
    both_agree += oc_ok && hf_ok && oc_row == padded(oc_ref, 0) && hf_row == padded(hf_ref, kEnd);
  }
  std::cout << "[ corpus   ] " << corpus.size() << " strings; equal to open_clip where the "
            << "cleaning subset agrees: " << oc_agree << ", to HF: " << hf_agree
            << ", to both: " << both_agree
            << "; mismatches against the subset mirror: " << oc_mismatch << " open_clip, "
            << hf_mismatch << " HF\n";
  RecordProperty("corpus_strings", static_cast<int>(corpus.size()));
  RecordProperty("agree_open_clip", oc_agree);
  RecordProperty("agree_hf", hf_agree);
  EXPECT_GE(both_agree, 1000);
}

// Every block of 128 code points with an assigned character, spaced and run together, encoded
// without specials or truncation: compared by token count and FNV-1a-64 of the ids.
TEST(CLIPTokenizer, UnicodeSweepMatchesReferences) {
  SKIP_WITHOUT_LIBRARIES();
  const auto fnv1a = [](const std::vector<int64_t>& ids) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t id : ids) {
      for (int byte = 0; byte < 4; ++byte) {
        h = (h ^ ((static_cast<uint64_t>(id) >> (8 * byte)) & 0xff)) * 0x100000001b3ull;
      }
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return std::string(hex);
  };
  int blocks = 0, skewed = 0, oc_real = 0, hf_real = 0;
  for (const io::Json& record : read_jsonl(kData / "sweep.jsonl")) {
    const auto first = static_cast<char32_t>(record.at("first").get<int64_t>());
    if (record.at("skew").get<bool>()) {
      ++skewed;  // the regex module's newer Unicode classifies some character otherwise
      continue;
    }
    std::u32string spaced, joined;
    for (char32_t c = first; c < first + 128; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      if (!spaced.empty()) spaced += U' ';
      spaced += c;
      joined += c;
    }
    const std::string text = code_points_to_utf8(spaced + U' ' + joined);
    for (const auto& [name, tokenizer] :
         {std::pair{"oc", &tokenizers().open_clip}, std::pair{"hf", &tokenizers().hf}}) {
      const std::string suffix = name;
      const bool subset = record.contains("hs_" + suffix);
      const std::string hash = record.at((subset ? "hs_" : "h_") + suffix).get<std::string>();
      const int64_t count = record.at((subset ? "ns_" : "n_") + suffix).get<int64_t>();
      const std::vector<int64_t> ids = tokenizer->encode(text);
      EXPECT_EQ(static_cast<int64_t>(ids.size()), count)
          << name << " block U+" << std::hex << static_cast<uint32_t>(first);
      EXPECT_EQ(fnv1a(ids), hash) << name << " block U+" << std::hex
                                  << static_cast<uint32_t>(first);
      if (record.at(suffix + "_ok").get<bool>() &&
          fnv1a(ids) == record.at("h_" + suffix).get<std::string>()) {
        (suffix == "oc" ? oc_real : hf_real) += 1;
      }
    }
    ++blocks;
  }
  std::cout << "[ sweep    ] " << blocks << " blocks compared (" << skewed
            << " skipped for Unicode-version skew); equal to open_clip: " << oc_real
            << ", to HF: " << hf_real << "\n";
  EXPECT_GT(blocks, 1000);
}

// ---- Rows: specials, truncation, padding ---------------------------------------------------

TEST(CLIPTokenizer, RowsAndPadding) {
  SKIP_WITHOUT_LIBRARIES();
  const auto& t = tokenizers();
  EXPECT_EQ(t.open_clip.encode("a photo of a cat"),
            (std::vector<int64_t>{320, 1125, 539, 320, 2368}));
  std::vector<int64_t> oc(kLength, 0), hf(kLength, kEnd);
  for (auto* row : {&oc, &hf}) {
    std::vector<int64_t> head = {kStart, 320, 1125, 539, 320, 2368, kEnd};
    std::copy(head.begin(), head.end(), row->begin());
  }
  EXPECT_EQ(row_of(t.open_clip.tokenize({"a photo of a cat"}), 0), oc);
  EXPECT_EQ(row_of(t.hf.tokenize({"a photo of a cat"}), 0), hf);
  EXPECT_EQ(t.open_clip.pad_id(), 0);
  EXPECT_EQ(t.hf.pad_id(), kEnd);
  for (const CLIPTokenizer* tok : {&t.open_clip, &t.hf}) {
    EXPECT_EQ(tok->start_id(), kStart);
    EXPECT_EQ(tok->end_id(), kEnd);
    EXPECT_EQ(tok->vocab_size(), 49408);
    // Empty and whitespace-only text: just the two specials.
    for (const std::string text : {"", " \t\n\u3000"}) {
      const std::vector<int64_t> row = row_of(tok->tokenize({text}), 0);
      EXPECT_EQ(row[0], kStart);
      EXPECT_EQ(row[1], kEnd);
      EXPECT_EQ(row[2], tok->pad_id());
    }
    const at::Tensor none = tok->tokenize({});
    EXPECT_EQ(none.sizes(), (at::IntArrayRef{0, kLength}));
  }
}

TEST(CLIPTokenizer, TruncationKeepsEndToken) {
  SKIP_WITHOUT_LIBRARIES();
  std::string text;
  for (int i = 0; i < 100; ++i) text += i % 2 ? "dog " : "cat ";
  for (const CLIPTokenizer* tok : {&tokenizers().open_clip, &tokenizers().hf}) {
    const std::vector<int64_t> content = tok->encode(text);
    ASSERT_EQ(content.size(), 100u);  // one token per word
    for (int64_t length : {2, 3, 8, 77, 101, 102, 103}) {
      const std::vector<int64_t> row = row_of(tok->tokenize({text}, length), 0);
      ASSERT_EQ(static_cast<int64_t>(row.size()), length);
      const auto kept = std::min<int64_t>(100, length - 2);
      std::vector<int64_t> expected = {kStart};
      expected.insert(expected.end(), content.begin(), content.begin() + kept);
      expected.push_back(kEnd);
      expected.resize(length, tok->pad_id());
      EXPECT_EQ(row, expected) << "context_length " << length;
    }
    EXPECT_THROW(tok->tokenize({text}, 1), std::invalid_argument);
  }
}

// The specials as text: open_clip's spellings after cleaning, HF's split from the raw text.
TEST(CLIPTokenizer, SpecialTokensInText) {
  SKIP_WITHOUT_LIBRARIES();
  const auto& t = tokenizers();
  EXPECT_EQ(t.open_clip.encode("<END_OF_TEXT>"), (std::vector<int64_t>{kEnd}));
  EXPECT_EQ(t.hf.encode("a<|endoftext|>"), (std::vector<int64_t>{320, kEnd}));
  EXPECT_EQ(t.hf.encode("<|startoftext|><|endoftext|>"), (std::vector<int64_t>{kStart, kEnd}));
  EXPECT_NE(t.open_clip.encode("<|endoftext|>"), (std::vector<int64_t>{kEnd}));
}

TEST(CLIPTokenizer, CopiesShareTheCacheAcrossThreads) {
  SKIP_WITHOUT_LIBRARIES();
  const std::vector<io::Json> corpus = read_jsonl(kData / "corpus.jsonl");
  std::vector<std::string> texts;
  for (std::size_t n = 0; n < corpus.size(); n += 3)
    texts.push_back(corpus[n].at("text").get<std::string>());
  const CLIPTokenizer fresh = CLIPTokenizer::open_clip(kVocab);
  std::vector<at::Tensor> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i, copy = fresh] { results[i] = copy.tokenize(texts); });
  }
  for (auto& thread : threads) thread.join();
  const at::Tensor expected = tokenizers().open_clip.tokenize(texts);
  for (const at::Tensor& r : results) EXPECT_TRUE(at::equal(r, expected));
}

// ---- Vocabulary files ----------------------------------------------------------------------

TEST(CLIPTokenizer, OpenClipVocabularyLayout) {
  SKIP_WITHOUT_LIBRARIES();
  const CLIPVocabulary v = read_open_clip_vocabulary(kVocab);
  ASSERT_EQ(v.tokens.size(), 49408u);
  ASSERT_EQ(v.merges.size(), 48894u);
  EXPECT_EQ(v.tokens[0], "!");
  EXPECT_EQ(v.tokens[188], "\u0100");  // byte 0, first of the remapped bytes
  EXPECT_EQ(v.tokens[256], "!</w>");
  EXPECT_EQ(v.merges[0], (std::pair<std::string, std::string>{"i", "n"}));
  EXPECT_EQ(v.tokens[512], "in");
  EXPECT_EQ(v.tokens[49406], "<start_of_text>");
  EXPECT_EQ(v.tokens[49407], "<end_of_text>");
}

// Builds without the optional libraries refuse to tokenize, saying which package is missing.
TEST(CLIPTokenizer, NamesMissingLibraries) {
  if (why_unavailable().empty()) GTEST_SKIP() << "PCRE2 and zlib are present";
  const std::string& why = why_unavailable();
  EXPECT_TRUE(why.find("the CLIP tokenizer needs PCRE2 (libpcre2-dev)") != std::string::npos ||
              why.find("zlib1g-dev") != std::string::npos)
      << why;
}

TEST(CLIPTokenizer, MissingVocabularyFile) {
  SKIP_WITHOUT_LIBRARIES();
  EXPECT_TRUE(throws_with([] { CLIPTokenizer::open_clip("no/such/vocab.txt.gz"); },
                          {"cannot open vocabulary file", "no/such/vocab.txt.gz"}));
  EXPECT_TRUE(throws_with([] { CLIPTokenizer::hf("no/vocab.json", "no/merges.txt"); },
                          {"cannot open vocabulary file", "no/vocab.json"}));
}

#ifdef MICRODIT_HAVE_ZLIB
// gzip of `gib` GiB of zero bytes, compressed here a MiB at a time (about 1 MB per GiB).
std::string gzip_of_zeros(int gib) {
  z_stream stream{};
  // Z_RLE: runs of a byte are all there is, and it compresses them fastest.
  EXPECT_EQ(deflateInit2(&stream, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_RLE), Z_OK);
  std::string zeros(1 << 20, '\0'), out, chunk(1 << 16, '\0');
  for (int mib = 0; mib < gib * 1024; ++mib) {
    stream.next_in = reinterpret_cast<Bytef*>(zeros.data());
    stream.avail_in = static_cast<uInt>(zeros.size());
    const int flush = mib + 1 == gib * 1024 ? Z_FINISH : Z_NO_FLUSH;
    do {
      stream.next_out = reinterpret_cast<Bytef*>(chunk.data());
      stream.avail_out = static_cast<uInt>(chunk.size());
      deflate(&stream, flush);
      out.append(chunk.data(), chunk.size() - stream.avail_out);
    } while (stream.avail_out == 0);
  }
  deflateEnd(&stream);
  return out;
}

// A 1 GiB gzip bomb as the vocabulary: refused once 64 MiB are out, in one line.
TEST(CLIPTokenizer, GzipBombVocabularyIsOneLine) {
  SKIP_WITHOUT_LIBRARIES();
  test::TempDir dir("clip_tokenizer_bomb");
  const fs::path bomb = dir.path / "bomb.txt.gz";
  test::write_bytes(bomb, gzip_of_zeros(1));
  EXPECT_LT(fs::file_size(bomb), 2u << 20);
  EXPECT_TRUE(test::throws_one_line([&] { CLIPTokenizer::open_clip(bomb); }, "CLIPTokenizer: ",
                                    {bomb.string(), "decompresses to more than 67108864 bytes"}));
}
#endif

TEST(CLIPTokenizer, CorruptVocabularyFiles) {
  SKIP_WITHOUT_LIBRARIES();
  test::TempDir dir("clip_tokenizer_corrupt");
  const std::string gz = test::read_bytes(kVocab);
  const fs::path truncated = dir.path / "truncated.gz", garbage = dir.path / "garbage.gz";
  test::write_bytes(truncated, gz.substr(0, gz.size() / 2));
  test::write_bytes(garbage, std::string("\x1f\x8b\x08\x00", 4) + std::string(64, 'x'));
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::open_clip(truncated); },
                          {truncated.string(), "gzip data is truncated"}));
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::open_clip(garbage); },
                          {garbage.string(), "not valid gzip data"}));

  const fs::path short_merges = dir.path / "short.txt";
  test::write_bytes(short_merges, "#version: 0.2\ni n\nt h\n");
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::open_clip(short_merges); },
                          {"has 2 merge lines after the header, expected 48894"}));
  const fs::path bad_line = dir.path / "bad_line.txt";
  test::write_bytes(bad_line, "#version: 0.2\ni n\nt h e\n");
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::open_clip(bad_line); },
                          {"line 3 has 3 fields, expected a merge of two symbols"}));
  const fs::path not_utf8 = dir.path / "latin1.txt";
  test::write_bytes(not_utf8, "#version: 0.2\n\xe9 n\n");
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::open_clip(not_utf8); },
                          {"not valid UTF-8 (byte offset 14)"}));
}

TEST(CLIPTokenizer, CorruptHFFiles) {
  SKIP_WITHOUT_LIBRARIES();
  test::TempDir dir("clip_tokenizer_hf_corrupt");
  const CLIPVocabulary v = read_open_clip_vocabulary(kVocab);
  const fs::path vocab = dir.path / "vocab.json", merges = dir.path / "merges.txt";
  write_hf_vocabulary(v, vocab, merges);
  const std::string good_vocab = test::read_bytes(vocab);

  test::write_bytes(vocab, good_vocab.substr(0, 1000));
  EXPECT_TRUE(
      throws_with([&] { CLIPTokenizer::hf(vocab, merges); },
                  {vocab.string() + ": invalid JSON at byte "}));
  test::write_bytes(vocab, "[1, 2]");
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::hf(vocab, merges); },
                          {"expected a JSON object, got array"}));
  test::write_bytes(vocab, R"({"!": "zero"})");
  EXPECT_TRUE(
      throws_with([&] { CLIPTokenizer::hf(vocab, merges); }, {"token \"!\" has id \"zero\""}));

  std::string no_end = good_vocab;
  no_end.replace(no_end.find("\"<|endoftext|>\""), 15, "\"<|the_end|>\"");
  test::write_bytes(vocab, no_end);
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::hf(vocab, merges); },
                          {"end token \"<|endoftext|>\" is not in the vocabulary"}));

  std::string no_merge_result = good_vocab;
  no_merge_result.replace(no_merge_result.find("\"in\":"), 5, "\"IN\":");
  test::write_bytes(vocab, no_merge_result);
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::hf(vocab, merges); },
                          {"merge 1 (\"i n\"): symbol \"in\" is not in the vocabulary"}));

  test::write_bytes(vocab, good_vocab);
  const std::string good_merges = test::read_bytes(merges);
  test::write_bytes(merges, good_merges.substr(0, good_merges.size() / 2));
  EXPECT_TRUE(throws_with([&] { CLIPTokenizer::hf(vocab, merges); },
                          {merges.string(), "merge lines after the header, expected 48894"}));
  // Windows line ends and surrounding whitespace are fine, as for transformers.
  std::string crlf = "\n\n";
  for (char c : good_merges) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  test::write_bytes(merges, crlf);
  EXPECT_EQ(CLIPTokenizer::hf(vocab, merges).encode("a photo of a cat"),
            tokenizers().hf.encode("a photo of a cat"));
}

// ---- Cleaning ------------------------------------------------------------------------------

TEST(TextClean, FtfySubset) {
  EXPECT_EQ(ftfy_fix_text("Broken text&hellip; it&#x2019;s \uFB02ubberi\uFB01c!"),
            "Broken text\u2026 it's flubberific!");
  EXPECT_EQ(ftfy_fix_text("\uFF2C\uFF2F\uFF35\uFF24\u3000\uFF2E\uFF2F\uFF29\uFF33\uFF25\uFF33"),
            "LOUD NOISES");
  EXPECT_EQ(ftfy_fix_text("&lt;tag&gt;"), "<tag>");
  EXPECT_EQ(ftfy_fix_text("<p>&amp;</p>"), "<p>&amp;</p>");  // literal '<': no unescaping
  EXPECT_EQ(ftfy_fix_text("a &amp; b\n<p>\nc &amp; d"), "a & b\n<p>\nc &amp; d");
  EXPECT_EQ(ftfy_fix_text("P&EACUTE;REZ &Ntilde; &NTILDE; &nTILDE;"),
            "P\u00c9REZ \u00d1 \u00d1 &nTILDE;");
  EXPECT_EQ(ftfy_fix_text("&amp;amp;amp;"), "&");  // repeated until nothing changes
  EXPECT_EQ(ftfy_fix_text("&#59; &#x3b; &#65;"), "&#59; &#x3b; A");  // ftfy keeps a decoded ';'
  EXPECT_EQ(ftfy_fix_text("\x1b[36;44mblue\x1b[0m"), "blue");
  EXPECT_EQ(ftfy_fix_text("\u201cquoted\u201d \u2018x\u2019 \u0149"), "\"quoted\" 'x' 'n");
  EXPECT_EQ(ftfy_fix_text("a\r\nb\rc\u2028d\u0085e"), "a\nb\nc\nd\u2026e");  // U+0085 is C1
  EXPECT_EQ(ftfy_fix_text("\ufeffbom\x01\x7f"), "bom");
  EXPECT_EQ(ftfy_fix_text("e\u0301 \u1100\u1161\u11a8"), "\u00e9 \uac01");
  EXPECT_EQ(ftfy_fix_text("caf\u00c3\u00a9"), "caf\u00c3\u00a9");  // no mojibake repair
}

TEST(TextClean, PythonBuiltins) {
  EXPECT_EQ(html_unescape("&amp;lt; &ampx &lt3 &notit; &#0; &#x110000; &#11;x &#128;"),
            "&lt; &x <3 \u00acit; \ufffd \ufffd x \u20ac");
  EXPECT_EQ(html_unescape("&check; &hearts; &lang;"), "&check; \u2665 \u27e8");  // subset
  EXPECT_EQ(python_lower("\u039f\u0394\u039f\u03a3 \u03a3 \u0391\u03a3'\u03a3"),
            "\u03bf\u03b4\u03bf\u03c2 \u03c3 \u03b1\u03c3'\u03c2");
  EXPECT_EQ(python_lower("\u0130STANBUL \u1E9E \u212A"), "i\u0307stanbul \u00df k");
  EXPECT_EQ(nfc_normalize("\u212b \u0041\u030a q\u0307\u0323 \u0958"),
            "\u00c5 \u00c5 q\u0323\u0307 \u0915\u093c");
  EXPECT_EQ(collapse_whitespace("\u3000 a\u00a0\tb \x1c c\u200b "), "a b c\u200b");
  EXPECT_EQ(clean_open_clip("  Tom &amp;amp; JERRY\u2019S  "), "tom & jerry's");
  EXPECT_EQ(clean_hf("  Tom &amp;amp; JERRY\u2019S  "), "tom & jerry's");
  // A literal '<' stops ftfy's unescaping; only open_clip's html.unescape follows.
  EXPECT_EQ(clean_open_clip("<b>Tom &amp; JERRY</b>"), "<b>tom & jerry</b>");
  EXPECT_EQ(clean_hf("<b>Tom &amp; JERRY</b>"), "<b>tom &amp; jerry</b>");
  EXPECT_EQ(utf8_to_code_points("a\xe2\x82"
                                "b\xff\xed\xa0\x80"),
            U"a\ufffdb\ufffd\ufffd\ufffd\ufffd");  // as bytes.decode("utf-8", "replace")
}

}  // namespace
}  // namespace microdit::encoders
