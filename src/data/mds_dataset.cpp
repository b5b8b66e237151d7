#include "microdit/data/mds_dataset.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "microdit/io/tensor_map.h"
#include "microdit/util/parse_number.h"

namespace microdit::data {

namespace fs = std::filesystem;

namespace {

int64_t numel_of(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

// Checks that `reader` has `column` stored as bytes (raw fp16) or as an ndarray whose fixed size,
// if any, matches `shape`.
void check_column(const MDSReader& reader, const std::string& column,
                  const std::vector<int64_t>& shape) {
  const auto& columns = reader.column_info();
  const auto it = std::find_if(columns.begin(), columns.end(),
                               [&](const MDSColumn& c) { return c.name == column; });
  const std::string where = c10::str(reader.directory().string(), ": column \"", column, "\"");
  if (it == columns.end()) {
    std::string have;
    for (const auto& c : columns) have += (have.empty() ? "" : ", ") + c.name;
    throw std::runtime_error(c10::str(reader.directory().string(), ": no column \"", column,
                                      "\" (columns: ", have.empty() ? "none" : have, ")"));
  }
  if (it->encoding != "bytes" && !it->encoding.starts_with("ndarray")) {
    throw std::runtime_error(
        c10::str(where, " has encoding ", it->encoding, ", expected bytes (raw fp16) or ndarray"));
  }
  if (it->encoding == "bytes" || !it->size) return;
  // A static ndarray: its element count must match; its dtype size follows from the byte size.
  const auto colon = it->encoding.rfind(':');
  std::vector<int64_t> stored;
  for (std::size_t pos = colon + 1; pos <= it->encoding.size();) {
    const auto comma = std::min(it->encoding.find(',', pos), it->encoding.size());
    stored.push_back(
        util::parse_int(it->encoding.substr(pos, comma - pos), where + " ndarray dimension", 0));
    pos = comma + 1;
  }
  if (numel_of(stored) != numel_of(shape)) {
    throw std::runtime_error(c10::str(where, " stores ", io::shape_string(stored), ", expected ",
                                      io::shape_string(shape)));
  }
}

// The float32 (shape) tensor of a bytes (fp16) or ndarray value.
at::Tensor to_float(const MDSValue& value, const std::vector<int64_t>& shape,
                    const std::string& column, const MDSReader& reader, int64_t index) {
  const int64_t numel = numel_of(shape);
  if (const auto* bytes = std::get_if<std::string>(&value)) {
    const auto expected = static_cast<std::size_t>(numel) * 2;
    if (bytes->size() != expected) {
      throw std::runtime_error(c10::str(reader.describe_sample(index), ": column \"", column,
                                        "\" has ", bytes->size(), " bytes, expected ", expected,
                                        " (fp16 ", io::shape_string(shape), ")"));
    }
    at::Tensor half = at::empty(shape, at::kHalf);
    std::memcpy(half.data_ptr(), bytes->data(), expected);
    return half.to(at::kFloat);
  }
  const auto& tensor = std::get<at::Tensor>(value);
  if (tensor.numel() != numel || !at::isFloatingType(tensor.scalar_type())) {
    throw std::runtime_error(c10::str(
        reader.describe_sample(index), ": column \"", column, "\" holds ", tensor.scalar_type(),
        " ", io::shape_string(tensor.sizes()), ", expected a float ", io::shape_string(shape)));
  }
  return tensor.reshape(shape).to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

}  // namespace

MDSLatentDataset::MDSLatentDataset(const std::vector<fs::path>& directories,
                                   const MDSLatentDatasetOptions& options)
    : options_(options), starts_{0} {
  if (directories.empty()) throw std::invalid_argument("MDSLatentDataset: no directories");
  if (options_.latent_size < 0) {
    throw std::invalid_argument(c10::str("MDSLatentDataset: latent_size ", options_.latent_size,
                                         " is negative (0: resolution / 8)"));
  }
  if (options_.latent_size == 0 && (options_.resolution <= 0 || options_.resolution % 8 != 0)) {
    throw std::invalid_argument(c10::str("MDSLatentDataset: resolution ", options_.resolution,
                                         " is not a positive multiple of 8 (the VAE factor)"));
  }
  if (options_.latent_channels <= 0 || options_.caption_tokens <= 0 ||
      options_.caption_channels <= 0) {
    throw std::invalid_argument("MDSLatentDataset: shapes must be positive");
  }
  latents_column_ = options_.latents_column.empty() ? c10::str("latents_", options_.resolution)
                                                    : options_.latents_column;
  for (const auto& directory : directories) {
    MDSReader reader(directory, options_.reader);
    check_column(reader, options_.caption_column, caption_shape());
    check_column(reader, latents_column_, latent_shape());
    starts_.push_back(starts_.back() + reader.size());
    readers_.push_back(std::move(reader));
  }
  if (size() == 0) {
    throw std::runtime_error(c10::str("MDSLatentDataset: the ", directories.size(),
                                      " directories (", directories.front().string(),
                                      ", ...) hold no samples"));
  }
}

std::vector<int64_t> MDSLatentDataset::latent_shape() const {
  const int64_t side = options_.latent_size > 0 ? options_.latent_size : options_.resolution / 8;
  return {options_.latent_channels, side, side};
}

std::vector<int64_t> MDSLatentDataset::caption_shape() const {
  return {options_.caption_tokens, options_.caption_channels};
}

Sample MDSLatentDataset::get(int64_t index) const {
  check_index(index, size(), "MDS latent dataset");
  const auto k = std::upper_bound(starts_.begin(), starts_.end(), index) - starts_.begin() - 1;
  const MDSReader& reader = readers_[k];
  const int64_t local = index - starts_[k];
  const MDSSample sample = reader.get(local, {options_.caption_column, latents_column_});
  return {to_float(sample.at(latents_column_), latent_shape(), latents_column_, reader, local),
          to_float(sample.at(options_.caption_column), caption_shape(), options_.caption_column,
                   reader, local)};
}

}  // namespace microdit::data
