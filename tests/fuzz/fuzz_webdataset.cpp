// WebDataset tars (data/tar_reader.cpp): libarchive's tar, gzip and zstd readers, then the
// grouping of members into samples.
#include "fuzz_support.h"
#include "microdit/data/tar_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  microdit::fuzz::expect_clean_error("input.tar", [&] {
    microdit::data::WebDatasetReader reader(microdit::fuzz::bytes_of(data, size), "input.tar");
    while (reader.next_sample()) {
    }
  });
  return 0;
}
