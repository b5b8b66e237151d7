// state_dict / load_state_dict for torch::nn::Module (see state_dict.h).
#include "microdit/io/state_dict.h"

#include <ATen/core/grad_mode.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <stdexcept>

namespace microdit::io {

namespace {

TensorMap named_tensors(const torch::nn::Module& module) {
  TensorMap tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    tensors.emplace(item.key(), item.value());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    tensors.emplace(item.key(), item.value());
  }
  return tensors;
}

bool contains(const std::vector<std::string>& keys, const std::string& key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::vector<std::string> find_problems(const TensorMap& model, const TensorMap& checkpoint,
                                       const LoadOptions& options) {
  std::vector<std::string> problems;
  for (const auto& [key, target] : model) {
    if (!target.defined() || contains(options.ignore_keys, key)) continue;
    const auto it = checkpoint.find(key);
    if (it == checkpoint.end()) {
      if (options.strict) {
        problems.push_back(c10::str("missing key ", key, " (model expects shape ",
                                    shape_string(target.sizes()), ")"));
      }
    } else if (!it->second.defined()) {
      problems.push_back(c10::str("checkpoint tensor ", key, " is undefined"));
    } else if (it->second.sizes() != target.sizes()) {
      problems.push_back(c10::str("checkpoint tensor ", key, " has shape ",
                                  shape_string(it->second.sizes()), ", model expects ",
                                  shape_string(target.sizes())));
    }
  }
  if (!options.strict) return problems;
  for (const auto& [key, tensor] : checkpoint) {
    if (!model.contains(key) && !contains(options.ignore_keys, key)) {
      problems.push_back(c10::str("unexpected key ", key, " (shape ", shape_string(tensor.sizes()),
                                  ") is not in the model"));
    }
  }
  return problems;
}

}  // namespace

TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap tensors = named_tensors(module);
  for (auto& [key, tensor] : tensors) {
    if (tensor.defined()) tensor = tensor.detach();
  }
  return tensors;
}

void load_state_dict(torch::nn::Module& module, const TensorMap& tensors,
                     const LoadOptions& options) {
  const TensorMap model = named_tensors(module);
  const std::vector<std::string> problems = find_problems(model, tensors, options);
  if (!problems.empty()) {
    // The first line names the count and the first problem (what a tool prints); the whole list
    // follows for callers that show it.
    std::string message = c10::str("load_state_dict: ", problems.size(), " problem",
                                   problems.size() == 1 ? "" : "s", ", the first: ", problems[0]);
    for (const std::string& problem : problems) message += "\n  " + problem;
    throw std::runtime_error(message);
  }
  at::NoGradGuard no_grad;
  for (const auto& [key, target] : model) {
    const auto it = tensors.find(key);
    if (it == tensors.end() || !target.defined() || contains(options.ignore_keys, key)) continue;
    target.copy_(it->second);
  }
}

}  // namespace microdit::io
