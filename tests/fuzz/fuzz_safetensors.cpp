// safetensors files (io/safetensors.cpp): header length, JSON header, offsets, tensor data.
#include "fuzz_support.h"
#include "microdit/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  microdit::fuzz::expect_clean_error("input.safetensors", [&] {
    std::map<std::string, std::string> metadata;
    microdit::io::parse_safetensors(microdit::fuzz::bytes_of(data, size), "input.safetensors",
                                    &metadata);
  });
  return 0;
}
