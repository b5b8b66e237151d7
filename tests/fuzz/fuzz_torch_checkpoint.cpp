// torch.save .pt archives (io/torch_checkpoint.cpp): LibTorch's zip reader, then our unpickler.
#include "fuzz_support.h"
#include "microdit/io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  microdit::fuzz::expect_clean_error("input.pt", [&] {
    std::vector<std::string> notes;
    microdit::io::parse_torch_state_dict(microdit::fuzz::bytes_of(data, size), "input.pt", &notes);
  });
  return 0;
}
