// Training configs (train/config.cpp): YAML through yaml-cpp, then the schema and validation;
// a config that passes has its parameters counted (model/state_dict_shapes.cpp), as --dry-run does.
#include "fuzz_support.h"
#include "microdit/model/state_dict_shapes.h"
#include "microdit/train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  microdit::fuzz::expect_clean_error("input.yaml", [&] {
    const auto config = microdit::train::parse_train_config(
        std::string(microdit::fuzz::bytes_of(data, size)), {}, "input.yaml");
    microdit::model::count_parameters(config.model.resolved());
  });
  return 0;
}
