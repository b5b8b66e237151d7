// The names and shapes of a MicroDiT's state dict (the official keys) and its parameter count,
// computed from the DiTConfig without building the model: an XL model is 4.7 GB of float32
// weights and seconds of initialisation, too much to spend before learning that a checkpoint
// belongs to another architecture.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "microdit/io/tensor_map.h"
#include "microdit/model/config.h"

namespace microdit::model {

struct TensorShape {
  std::string name;
  std::vector<int64_t> shape;
  bool parameter = true;  // false: a buffer (pos_embed, mask_token)
};

std::vector<TensorShape> state_dict_shapes(const DiTConfig& config);

int64_t count_parameters(const DiTConfig& config);

// Throws std::invalid_argument with one line naming `source`, the first difference between the
// tensors' names and shapes and `config`'s (a missing, unexpected or other-shaped tensor), and
// how many there are.
void check_state_dict_shapes(const DiTConfig& config, const io::TensorMap& tensors,
                             const std::string& source);

}  // namespace microdit::model
