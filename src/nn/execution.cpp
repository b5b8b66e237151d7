#include "microdit/nn/execution.h"

#include <stdexcept>

namespace microdit::nn {

std::string_view execution_mode_name(ExecutionMode mode) {
  return mode == ExecutionMode::fast ? "fast" : "reference";
}

ExecutionMode parse_execution_mode(std::string_view name, std::string_view what) {
  if (name == "reference") return ExecutionMode::reference;
  if (name == "fast") return ExecutionMode::fast;
  throw std::invalid_argument(std::string(what) + " is '" + std::string(name) +
                              "', expected reference or fast");
}

void apply_execution(torch::nn::Module& root, const Execution& execution) {
  for (const auto& module : root.modules(/*include_self=*/true)) {
    if (auto* m = dynamic_cast<HasExecution*>(module.get())) m->execution = execution;
  }
}

}  // namespace microdit::nn
