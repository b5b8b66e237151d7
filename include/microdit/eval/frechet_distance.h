// The Frechet distance of FID between two Gaussians fitted to Inception activations, as
// pytorch-fid (`calculate_frechet_distance`) and clean-fid (`frechet_distance`) compute it:
//   ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2)).
// Reference data: scripts/reference/make_fid_reference.py.
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace microdit::eval {

struct ActivationStatistics {
  at::Tensor mu;     // (D) float64, CPU
  at::Tensor sigma;  // (D,D) float64, CPU

  // mu = mean over rows, sigma = np.cov(activations, rowvar=False) (divides by N-1), both
  // accumulated in float64 from (N,D) activations of any floating dtype and device; N >= 2.
  // pytorch-fid keeps mu in the activations' dtype (float32 for Inception features), so its mu
  // can differ from ours by float32 rounding (~1e-7 relative).
  static ActivationStatistics from_activations(const at::Tensor& activations);
};

// In float64. tr(sqrtm(sigma1 sigma2)) is computed as the sum of the square roots of the
// eigenvalues of sigma1^{1/2} sigma2 sigma1^{1/2}, a symmetric PSD matrix similar to
// sigma1 sigma2 (same eigenvalues), so no general non-symmetric sqrtm is needed; tiny negative
// eigenvalues from rounding are clamped to 0. Where scipy's sqrtm of a near-singular product
// comes back complex, pytorch-fid drops imaginary parts below 1e-3 and raises above; we always
// return the real value. As pytorch-fid does, a non-finite trace is retried once with
// eps * I added to both covariances. Throws std::invalid_argument when mu is not 1-D, sigma is
// not square, or the two statistics differ in dimension.
double frechet_distance(const ActivationStatistics& a, const ActivationStatistics& b,
                        double eps = 1e-6);

// safetensors file with float64 tensors "mu" and "sigma" (written atomically); a non-empty
// `fid_mode` ("clean", "pytorch-fid") goes to the metadata entry "fid_mode", because statistics
// of one mode's network and resize must not be compared with another's.
void save_statistics(const std::filesystem::path& path, const ActivationStatistics& stats,
                     const std::string& fid_mode = "");

// Reads what save_statistics writes, or, for a `.npz` path, pytorch-fid's precomputed
// statistics (np.savez of float64 or float32 "mu" and "sigma"; np.savez_compressed archives
// are rejected). Errors are std::runtime_error whose message starts with the file path.
// `fid_mode`, if given, receives the recorded mode: empty for .npz and for files without one.
ActivationStatistics load_statistics(const std::filesystem::path& path,
                                     std::string* fid_mode = nullptr);
// A .npz already in memory, as load_statistics reads one; errors start with `name_for_errors`.
ActivationStatistics parse_npz_statistics(std::string_view bytes,
                                          const std::string& name_for_errors);

}  // namespace microdit::eval
