// The CLIP tokenizer (encoders/clip_tokenizer.cpp). The first byte picks what the rest is:
//   0      an open_clip vocabulary file (bpe_simple_vocab_16e6.txt, gzipped or not)
//   other  a caption, tokenized with the real vocabulary (tests/data/tokenizer) both ways
#include "fuzz_support.h"
#include "microdit/encoders/clip_tokenizer.h"

namespace {
const microdit::encoders::CLIPTokenizer& tokenizer() {
  static const auto t = microdit::encoders::CLIPTokenizer::open_clip(
      MICRODIT_SOURCE_DIR "/tests/data/tokenizer/bpe_simple_vocab_16e6.txt.gz");
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest = microdit::fuzz::bytes_of(data + 1, size - 1);
  if (data[0] == 0) {
    microdit::fuzz::expect_clean_error("input.txt.gz", [&] {
      microdit::encoders::parse_open_clip_vocabulary(std::string(rest), "input.txt.gz");
    });
  } else {
    tokenizer().tokenize({std::string(rest)});
  }
  return 0;
}
