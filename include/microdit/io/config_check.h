// Compares the sizes an encoder config asks for with the weights it comes with, before a model is
// built from the config: a config of another size (or a hostile one asking for thousands of
// layers) is one line naming the config file, not minutes and gigabytes spent building it.
#pragma once

#include <c10/util/StringUtil.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "microdit/io/tensor_map.h"

namespace microdit::io {

class ConfigCheck {
 public:
  // `config_source` names the config file; `subject` starts each field's name ("the text
  // tower's ", or "" when the file holds one model).
  ConfigCheck(const TensorMap& tensors, std::string config_source, std::string subject)
      : tensors_(tensors), source_(std::move(config_source)), subject_(std::move(subject)) {}

  // Dimension `dim` of tensor `key` when it has `rank` dimensions, else 0 (absent or misshapen).
  int64_t size(const std::string& key, int64_t rank, int64_t dim) const {
    const auto it = tensors_.find(key);
    return it == tensors_.end() || it->second.dim() != rank ? 0 : it->second.size(dim);
  }

  // Throws "<config>: <subject><field> is <configured> but the weights have <in_weights>
  // (<where>)" when the two differ.
  void expect(const std::string& field, int64_t configured, int64_t in_weights,
              const std::string& where) const {
    if (configured == in_weights) return;
    throw std::runtime_error(c10::str(source_, ": ", subject_, field, " is ", configured,
                                      " but the weights have ", in_weights, " (", where, ")"));
  }

  // The layer count against the numbered children of `prefix` ("encoder.layers.").
  void expect_layers(const std::string& field, int64_t configured,
                     const std::string& prefix) const {
    expect(field, configured, indexed_children(tensors_, prefix), prefix + "*");
  }

 private:
  const TensorMap& tensors_;
  std::string source_;
  std::string subject_;
};

}  // namespace microdit::io
