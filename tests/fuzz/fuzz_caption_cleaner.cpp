// Captions (data/caption_cleaner.cpp and encoders/text_clean.cpp): any bytes, cleaned as
// prepare does and as both tokenizers' cleaners do. clean_caption refuses markup that Python's
// html.parser rejects, in one line that prepare prefixes with the sample's name; the tokenizers'
// cleaners take any text.
#include "fuzz_support.h"
#include "microdit/data/caption_cleaner.h"
#include "microdit/encoders/text_clean.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = microdit::fuzz::bytes_of(data, size);
  microdit::fuzz::expect_clean_error("", [&] { microdit::data::clean_caption(text); });
  microdit::encoders::clean_open_clip(text);
  microdit::encoders::clean_hf(text);
  return 0;
}
