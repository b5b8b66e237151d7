// Image files (image/decode.cpp): libspng for PNG, libjpeg for JPEG, OpenCV for WebP and BMP.
#include "fuzz_support.h"
#include "microdit/image/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  microdit::fuzz::expect_clean_error("input.img", [&] {
    microdit::image::decode_image_rgb(microdit::fuzz::bytes_of(data, size), "input.img");
  });
  return 0;
}
