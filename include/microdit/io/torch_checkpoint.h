// Reads state dicts from official PyTorch `.pt` checkpoints (torch.save zip archives), such as
// the released MicroDiT weights. LibTorch's torch::pickle_load cannot: it turns the
// collections.OrderedDict of every state_dict() into None. This reader runs its own protocol-2
// unpickler that only knows dicts, lists, tuples, scalars and tensors, so a checkpoint cannot
// make it construct arbitrary objects.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "microdit/io/tensor_map.h"

namespace microdit::io {

// Accepts a pickled (Ordered)dict of name -> tensor, or a dict whose "state_dict" entry is one.
// Strips the wrapper prefixes "module." (DataParallel/DDP), "_orig_mod." (torch.compile) and
// "dit." (the DiT inside the training wrapper) when every key carries them, repeatedly.
// Non-tensor entries are skipped. Each unwrap, strip and skip is described in `*notes`.
// Tensors come back on CPU with the dtype, shape, strides and storage sharing of the file.
// Errors are std::runtime_error whose message starts with the file path.
TensorMap load_torch_state_dict(const std::filesystem::path& path,
                                std::vector<std::string>* notes = nullptr);

// The same for an archive already in memory; errors start with `name_for_errors`.
TensorMap parse_torch_state_dict(std::string_view bytes, const std::string& name_for_errors,
                                 std::vector<std::string>* notes = nullptr);

}  // namespace microdit::io
