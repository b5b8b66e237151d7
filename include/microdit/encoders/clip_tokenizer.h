// The CLIP byte-level BPE tokenizer (Radford et al. 2021) in the two implementations that
// MicroDiT's caption encoders are paired with; both give the same ids on the same cleaned text
// and differ in cleaning, special-token names and padding:
//
//              open_clip SimpleTokenizer            HF CLIPTokenizer (slow, ftfy installed)
//   files      bpe_simple_vocab_16e6.txt.gz         vocab.json + merges.txt
//   cleaning   clean_open_clip (html.unescape x2)   clean_hf (no html.unescape)
//   specials   <start_of_text> <end_of_text>        <|startoftext|> <|endoftext|>, also split
//                                                   out of the raw text before cleaning
//   row        [49406] + tokens + [49407]; too      [bos] + tokens[:L-2] + [eos]
//              long: cut to L, last set to 49407
//   padding    0 (which is also the id of "!")      49407 (pad_token = <|endoftext|>)
//
// Pipeline per text: clean (text_clean.h) -> pre-tokenizer regex (PCRE2, UTF + UCP, caseless)
//   <specials>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// -> each piece's UTF-8 bytes as byte symbols, "</w>" on the last -> merge the lowest-ranked
// adjacent pair until none is ranked (results cached per piece) -> ids.
// Vocabulary: ids 0-255 the byte symbols, 256-511 the same + "</w>", 512-49405 the merged pairs
// in rank order (merges file lines 1..48894), 49406/49407 the specials.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace microdit::encoders {

// A vocabulary as open_clip builds it from its merges file.
struct CLIPVocabulary {
  std::vector<std::string> tokens;                          // id -> token (UTF-8)
  std::vector<std::pair<std::string, std::string>> merges;  // rank -> pair
};

// Reads bpe_simple_vocab_16e6.txt.gz (gzip or plain text): the 48894 merges after the header
// line and the 49408 tokens derived from them, specials named <start_of_text> <end_of_text>.
// Throws std::runtime_error naming the file and the problem.
CLIPVocabulary read_open_clip_vocabulary(const std::filesystem::path& path);
// The same for the file's bytes already in memory; errors name `path`.
CLIPVocabulary parse_open_clip_vocabulary(std::string bytes, const std::filesystem::path& path);

// Writes `vocabulary` as HF's vocab.json and merges.txt ("#version: 0.2" header), renaming the
// specials to <|startoftext|> <|endoftext|>: the files of HF's openai/clip-vit-* repositories.
void write_hf_vocabulary(const CLIPVocabulary& vocabulary, const std::filesystem::path& vocab_json,
                         const std::filesystem::path& merges_txt);

class CLIPTokenizer {
 public:
  enum class Mode { open_clip, hf };
  static constexpr int64_t kDefaultContextLength = 77;

  // open_clip's SimpleTokenizer(bpe_path) with clean="lower".
  static CLIPTokenizer open_clip(const std::filesystem::path& bpe_vocab);
  // transformers' CLIPTokenizer(vocab_file, merges_file).
  static CLIPTokenizer hf(const std::filesystem::path& vocab_json,
                          const std::filesystem::path& merges_txt);

  // (N, context_length) int64 rows as described above. context_length >= 2.
  at::Tensor tokenize(const std::vector<std::string>& texts,
                      int64_t context_length = kDefaultContextLength) const;
  // Token ids of one text without the start/end tokens, not truncated (open_clip's encode, HF's
  // encode(add_special_tokens=False)).
  std::vector<int64_t> encode(const std::string& text) const;

  Mode mode() const;
  int64_t start_id() const;  // 49406 for the CLIP vocabulary
  int64_t end_id() const;    // 49407
  int64_t pad_id() const;    // open_clip 0, hf end_id()
  int64_t vocab_size() const;

 private:
  struct Impl;
  explicit CLIPTokenizer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // immutable but for the mutex-guarded BPE cache; shared by copies
};

}  // namespace microdit::encoders
