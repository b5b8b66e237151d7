// Shared test helpers: the official reference set and small model configs.
#pragma once
#include <filesystem>

#include "microdit/model/config.h"
#include "microdit/parity/reference_check.h"

namespace microdit::test {

inline std::filesystem::path reference_dir() { return MICRODIT_REFERENCE_DIR; }

// Loaded once per test binary: config.json and cases.safetensors of the official tiny set.
const parity::ReferenceSet& reference_set();

// A small config with every feature on: mixer of another width, MoE in backbone and mixer.
model::DiTConfig small_config();

}  // namespace microdit::test
