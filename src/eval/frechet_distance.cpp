// FID's Frechet distance (pytorch-fid src/pytorch_fid/fid_score.py calculate_frechet_distance)
// and its statistics files: safetensors, or pytorch-fid's .npz (a zip archive, read through
// libarchive, of .npy arrays). The .npy header is parsed here: NumPy's format
// (numpy/lib/format.py) has no C or C++ library, and the few lines below read all it needs.
#include "microdit/eval/frechet_distance.h"

#include <c10/util/StringUtil.h>
#include <c10/util/safe_numerics.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "microdit/io/archive_reader.h"
#include "microdit/io/safetensors.h"
#include "microdit/util/error_message.h"
#include "microdit/util/parse_number.h"

namespace microdit::eval {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              ".npy '<' and safetensors data are little-endian");

namespace {

// ---------------------------------------------------------------------------------------------
// The distance

void check_shapes(const ActivationStatistics& s, const char* which) {
  if (s.mu.dim() != 1) {
    throw std::invalid_argument(
        c10::str("frechet_distance: mu of ", which, " has shape ", s.mu.sizes(), ", expected (D)"));
  }
  if (s.sigma.dim() != 2 || s.sigma.size(0) != s.sigma.size(1)) {
    throw std::invalid_argument(c10::str("frechet_distance: sigma of ", which, " has shape ",
                                         s.sigma.sizes(), ", expected square (D,D)"));
  }
  if (s.sigma.size(0) != s.mu.size(0)) {
    throw std::invalid_argument(c10::str("frechet_distance: ", which, " has mu of dimension ",
                                         s.mu.size(0), " but sigma of ", s.sigma.sizes()));
  }
}

// The PSD square root of a symmetric PSD matrix; rounding can make zero eigenvalues slightly
// negative, which are taken as 0.
at::Tensor psd_sqrt(const at::Tensor& s) {
  auto [values, vectors] = at::linalg_eigh(s);
  return (vectors * values.clamp_min(0).sqrt()).mm(vectors.t());
}

// tr(sqrtm(s1 s2)): s1 s2 = s1^{1/2} (s1^{1/2} s2 s1^{1/2}) s1^{-1/2} when s1 is invertible
// (and by continuity otherwise), so both have the same non-negative eigenvalues, and the trace
// of the principal square root is the sum of their square roots.
double trace_sqrt_product(const at::Tensor& s1, const at::Tensor& s2) {
  const at::Tensor root = psd_sqrt(s1);
  const at::Tensor m = root.mm(s2).mm(root);
  return at::linalg_eigvalsh((m + m.t()) / 2).clamp_min(0).sqrt().sum().item<double>();
}

at::Tensor as_cpu_double(const at::Tensor& t) { return t.to(at::kCPU, at::kDouble); }

// ---------------------------------------------------------------------------------------------
// .npz: a zip (np.savez: stored, np.savez_compressed: deflated) of .npy arrays

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw std::runtime_error(path.string() + ": " + what);
}

template <class T>
T read_le(std::string_view bytes, std::size_t offset) {
  if (offset + sizeof(T) > bytes.size()) throw std::runtime_error("truncated .npy header");
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// The text after `'key':` in a .npy header dict, up to the next top-level ',' or '}'.
std::string_view npy_field(std::string_view header, std::string_view key) {
  const std::size_t at = header.find("'" + std::string(key) + "':");
  if (at == std::string_view::npos) throw std::runtime_error("no '" + std::string(key) + "'");
  std::string_view rest = header.substr(at + key.size() + 3);
  rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
  const std::size_t stop = rest.starts_with('(') ? rest.find(')') + 1 : rest.find_first_of(",}");
  return rest.substr(0, stop);
}

std::vector<std::int64_t> npy_shape(std::string_view tuple) {
  std::vector<std::int64_t> shape;
  for (std::size_t at = 0;
       (at = tuple.find_first_of("0123456789", at)) != std::string_view::npos;) {
    const std::size_t stop = std::min(tuple.find_first_not_of("0123456789", at), tuple.size());
    shape.push_back(util::parse_int(tuple.substr(at, stop - at), ".npy shape dimension", 0));
    at = stop;
  }
  return shape;
}

at::Tensor parse_npy(std::string_view npy) {
  if (!npy.starts_with("\x93NUMPY") || npy.size() < 10)
    throw std::runtime_error("not a .npy array");
  const bool long_header = npy[6] >= 2;  // versions 2 and 3 have a 4-byte header length
  const std::size_t length =
      long_header ? read_le<std::uint32_t>(npy, 8) : read_le<std::uint16_t>(npy, 8);
  const std::size_t start = long_header ? 12 : 10;
  if (start + length > npy.size()) throw std::runtime_error("truncated .npy header");
  const std::string_view header = npy.substr(start, length);
  const std::string_view descr = npy_field(header, "descr");
  if (descr != "'<f8'" && descr != "'<f4'") {
    throw std::runtime_error("dtype " + std::string(descr) + " is not '<f8' or '<f4'");
  }
  if (npy_field(header, "fortran_order") != "False") {
    throw std::runtime_error("Fortran-order arrays are not supported");
  }
  const std::vector<std::int64_t> shape = npy_shape(npy_field(header, "shape"));
  const std::string_view data = npy.substr(start + length);
  // Checked before anything is allocated: a damaged header could claim any shape.
  const std::size_t item = descr == "'<f8'" ? 8 : 4;
  std::uint64_t elements = 0;
  if (c10::safe_multiplies_u64(shape, &elements) || data.size() % item != 0 ||
      elements != data.size() / item) {
    throw std::runtime_error("data size does not match the shape");
  }
  at::Tensor out = at::empty(shape, descr == "'<f8'" ? at::kDouble : at::kFloat);
  std::memcpy(out.data_ptr(), data.data(), data.size());
  return out.to(at::kDouble);
}

at::Tensor npz_array(const std::map<std::string, std::string>& members, const std::string& name) {
  const auto it = members.find(name + ".npy");
  if (it == members.end()) throw std::runtime_error("missing array \"" + name + "\"");
  try {
    return parse_npy(it->second);
  } catch (const std::exception& e) {
    throw std::runtime_error("array \"" + name + "\": " + util::error_message(e));
  }
}

ActivationStatistics read_npz(io::ArchiveReader& zip, const fs::path& path) {
  std::map<std::string, std::string> members;  // mu.npy and sigma.npy; other arrays are skipped
  while (auto entry = zip.next()) {
    if (entry->name == "mu.npy" || entry->name == "sigma.npy") {
      members[entry->name] = zip.read(*entry);
    }
  }
  try {
    return {npz_array(members, "mu"), npz_array(members, "sigma")};
  } catch (const std::runtime_error& e) {
    fail(path, e.what());
  }
}

ActivationStatistics load_npz(const fs::path& path) {
  io::ArchiveReader zip(path, io::ArchiveReader::Format::zip);
  return read_npz(zip, path);
}

ActivationStatistics load_safetensors_statistics(const fs::path& path, std::string* fid_mode) {
  std::map<std::string, std::string> metadata;
  const io::TensorMap tensors = io::load_safetensors(path, &metadata);
  if (fid_mode != nullptr) *fid_mode = metadata.contains("fid_mode") ? metadata["fid_mode"] : "";
  auto get = [&](const std::string& name) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) fail(path, "missing tensor \"" + name + "\"");
    return as_cpu_double(it->second);
  };
  return {get("mu"), get("sigma")};
}

}  // namespace

ActivationStatistics ActivationStatistics::from_activations(const at::Tensor& activations) {
  if (activations.dim() != 2 || activations.size(0) < 2) {
    throw std::invalid_argument(c10::str("from_activations: activations have shape ",
                                         activations.sizes(), ", expected (N,D) with N >= 2"));
  }
  const at::Tensor x = as_cpu_double(activations);
  at::Tensor mu = x.mean(0);
  const at::Tensor centered = x - mu;
  return {mu, centered.t().mm(centered) / static_cast<double>(x.size(0) - 1)};
}

double frechet_distance(const ActivationStatistics& a, const ActivationStatistics& b, double eps) {
  check_shapes(a, "the first statistics");
  check_shapes(b, "the second statistics");
  if (a.mu.size(0) != b.mu.size(0)) {
    throw std::invalid_argument(
        c10::str("frechet_distance: dimensions differ: ", a.mu.size(0), " vs ", b.mu.size(0)));
  }
  const at::Tensor s1 = as_cpu_double(a.sigma), s2 = as_cpu_double(b.sigma);
  double tr_covmean = trace_sqrt_product(s1, s2);
  if (!std::isfinite(tr_covmean)) {  // pytorch-fid's fallback for a singular product
    const at::Tensor offset = at::eye(s1.size(0), s1.options()) * eps;
    tr_covmean = trace_sqrt_product(s1 + offset, s2 + offset);
  }
  const at::Tensor diff = as_cpu_double(a.mu) - as_cpu_double(b.mu);
  return diff.dot(diff).item<double>() + s1.trace().item<double>() + s2.trace().item<double>() -
         2 * tr_covmean;
}

void save_statistics(const fs::path& path, const ActivationStatistics& stats,
                     const std::string& fid_mode) {
  std::map<std::string, std::string> metadata;
  if (!fid_mode.empty()) metadata["fid_mode"] = fid_mode;
  io::save_safetensors(
      path, {{"mu", as_cpu_double(stats.mu)}, {"sigma", as_cpu_double(stats.sigma)}}, metadata);
}

namespace {
void check_statistics(const ActivationStatistics& stats, const fs::path& path) {
  if (stats.mu.dim() != 1 || stats.sigma.dim() != 2 || stats.sigma.size(0) != stats.mu.size(0) ||
      stats.sigma.size(1) != stats.mu.size(0)) {
    fail(path, c10::str("mu ", stats.mu.sizes(), " and sigma ", stats.sigma.sizes(),
                        " are not (D) and (D,D)"));
  }
}
}  // namespace

ActivationStatistics load_statistics(const fs::path& path, std::string* fid_mode) {
  if (fid_mode != nullptr) fid_mode->clear();
  ActivationStatistics stats =
      path.extension() == ".npz" ? load_npz(path) : load_safetensors_statistics(path, fid_mode);
  check_statistics(stats, path);
  return stats;
}

ActivationStatistics parse_npz_statistics(std::string_view bytes,
                                          const std::string& name_for_errors) {
  io::ArchiveReader zip(bytes, name_for_errors, io::ArchiveReader::Format::zip);
  ActivationStatistics stats = read_npz(zip, name_for_errors);
  check_statistics(stats, name_for_errors);
  return stats;
}

}  // namespace microdit::eval
