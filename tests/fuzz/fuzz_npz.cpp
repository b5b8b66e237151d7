// pytorch-fid statistics .npz (eval/frechet_distance.cpp): a zip of .npy arrays.
#include "fuzz_support.h"
#include "microdit/eval/frechet_distance.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  microdit::fuzz::expect_clean_error("input.npz", [&] {
    microdit::eval::parse_npz_statistics(microdit::fuzz::bytes_of(data, size), "input.npz");
  });
  return 0;
}
