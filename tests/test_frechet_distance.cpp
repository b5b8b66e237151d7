// FID's Frechet distance and statistics files against pytorch-fid's formula on numpy/scipy
// (tests/data/fid, made by scripts/reference/make_fid_reference.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "microdit/eval/frechet_distance.h"
#include "microdit/io/safetensors.h"
#include "test_one_line.h"
#include "test_support.h"

namespace microdit {
namespace {

const std::filesystem::path kDataDir =
    test::source_dir() / "tests/data/fid";

const io::TensorMap& reference() {
  static const io::TensorMap tensors = io::load_safetensors(kDataDir / "frechet.safetensors");
  return tensors;
}

const at::Tensor& reference_tensor(const std::string& name) { return reference().at(name); }

eval::ActivationStatistics ref_stats(const std::string& name, int side) {
  const std::string suffix = std::to_string(side);
  return {reference_tensor(name + ".mu" + suffix), reference_tensor(name + ".sigma" + suffix)};
}

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max()).item<double>();
}

struct Case {
  const char* name;
  bool near_singular;
};
constexpr Case kCases[] = {
    {"rand16", false}, {"rand64", false}, {"rank_deficient", true}, {"zero_variance", true}};

// Relative 1e-6 on regular cases; 1e-4 relative or 1e-6 absolute where scipy's sqrtm works on
// a singular product.
void expect_fid_near(double got, double want, const Case& c, const char* source) {
  const double error = std::abs(got - want);
  std::printf("[ fid ] %s (%s): %.17g vs scipy %.17g, relative error %.3g\n", c.name, source, got,
              want, error / std::abs(want));
  if (c.near_singular) {
    EXPECT_TRUE(error <= 1e-4 * std::abs(want) || error <= 1e-6) << c.name << ": " << error;
  } else {
    EXPECT_LE(error, 1e-6 * std::abs(want)) << c.name;
  }
}

TEST(FrechetDistance, StatisticsMatchNumpy) {
  for (const Case& c : kCases) {
    for (int side : {1, 2}) {
      const std::string suffix = std::to_string(side);
      const auto stats = eval::ActivationStatistics::from_activations(
          reference_tensor(c.name + (".act" + suffix)));
      const auto want = ref_stats(c.name, side);
      ASSERT_EQ(stats.mu.scalar_type(), at::kDouble);
      EXPECT_LE(max_relative_error(stats.mu, want.mu), 1e-12) << c.name << side;
      EXPECT_LE(max_relative_error(stats.sigma, want.sigma), 1e-12) << c.name << side;
    }
  }
}

TEST(FrechetDistance, MatchesPytorchFid) {
  for (const Case& c : kCases) {
    const double want = reference_tensor(c.name + std::string(".fid")).item<double>();
    expect_fid_near(eval::frechet_distance(ref_stats(c.name, 1), ref_stats(c.name, 2)), want, c,
                    "stored stats");
    const auto a = eval::ActivationStatistics::from_activations(
        reference_tensor(c.name + std::string(".act1")));
    const auto b = eval::ActivationStatistics::from_activations(
        reference_tensor(c.name + std::string(".act2")));
    expect_fid_near(eval::frechet_distance(a, b), want, c, "from activations");
  }
}

TEST(FrechetDistance, IdenticalStatisticsGiveZero) {
  EXPECT_EQ(reference_tensor("identical.fid").item<double>(), 0.0);
  const auto stats = ref_stats("rand16", 1);
  EXPECT_NEAR(eval::frechet_distance(stats, stats), 0.0, 1e-9);
}

TEST(FrechetDistance, RejectsMismatchedShapes) {
  const auto small = ref_stats("rand16", 1), large = ref_stats("rand64", 1);
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { eval::frechet_distance(small, large); }, "frechet_distance",
      {"dimensions differ: 16 vs 64"}));
  const eval::ActivationStatistics non_square{small.mu, small.sigma.narrow(1, 0, 8)};
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] { eval::frechet_distance(non_square, small); }, "frechet_distance",
      {"sigma of the first statistics", "square"}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [&] {
        eval::frechet_distance(small, {small.mu, large.sigma});
      },
      "frechet_distance", {"second statistics has mu of dimension 16"}));
  EXPECT_THROW(eval::ActivationStatistics::from_activations(at::ones({1, 4})),
               std::invalid_argument);
}

TEST(FrechetStatistics, SaveLoadRoundTrip) {
  test::TempDir dir("frechet_stats");
  const auto stats = ref_stats("rand16", 2);
  eval::save_statistics(dir.path / "stats.safetensors", stats);
  const auto loaded = eval::load_statistics(dir.path / "stats.safetensors");
  EXPECT_TRUE(loaded.mu.equal(stats.mu));
  EXPECT_TRUE(loaded.sigma.equal(stats.sigma));

  const auto partial = dir.path / "partial.safetensors";
  io::save_safetensors(partial, {{"mu", stats.mu}});
  EXPECT_TRUE(test::throws_with([&] { eval::load_statistics(partial); }, partial.string(),
                                {"missing tensor \"sigma\""}));
}

// .npz files are zip archives, read through libarchive: builds without it skip these.
#ifdef MICRODIT_HAVE_LIBARCHIVE
#define SKIP_WITHOUT_LIBARCHIVE()
#else
#define SKIP_WITHOUT_LIBARCHIVE() GTEST_SKIP() << "this build has no libarchive"
#endif

TEST(FrechetStatistics, LoadsPytorchFidNpz) {
  SKIP_WITHOUT_LIBARCHIVE();
  // np.savez (stored entries, as pytorch-fid's files) and np.savez_compressed (deflated).
  for (const char* file : {"stats16.npz", "stats16_deflated.npz"}) {
    const auto stats = eval::load_statistics(kDataDir / file);
    const auto want = ref_stats("rand16", 1);
    EXPECT_TRUE(stats.mu.equal(want.mu)) << file;
    EXPECT_TRUE(stats.sigma.equal(want.sigma)) << file;
  }
}

// A zip entry declaring most of a GiB for the few bytes there are: refused from what is read,
// without allocating what the header claims (tests/fuzz/crashes/npz/zip_entry_declaring_a_gib).
TEST(FrechetStatistics, NpzEntryClaimingAGibIsOneLine) {
  const std::string bytes = test::read_bytes(test::source_dir() /
                                             "tests/fuzz/crashes/npz/zip_entry_declaring_a_gib");
  EXPECT_TRUE(test::throws_one_line([&] { eval::parse_npz_statistics(bytes, "claims.npz"); },
                                    "claims.npz: ", {"member 'mu.npy'"}));
}

TEST(FrechetStatistics, RejectsBadNpz) {
  SKIP_WITHOUT_LIBARCHIVE();
  test::TempDir dir("frechet_npz");
  const std::string bytes = test::read_bytes(kDataDir / "stats16.npz");
  auto expect_error = [&](const std::string& name, const std::string& content, const char* piece) {
    const auto path = dir.path / name;
    test::write_bytes(path, content);
    EXPECT_TRUE(test::throws_with([&] { eval::load_statistics(path); }, path.string(), {piece}));
  };
  expect_error("truncated.npz", bytes.substr(0, 100), "member 'mu.npy': Truncated ZIP file data");
  expect_error("text.npz", std::string(200, 'x'), "cannot open as a zip archive");

  std::string damaged = bytes;  // a byte of mu's data: the stored CRC-32 no longer matches
  damaged[bytes.find("\x93NUMPY") + 200] ^= 0x55;
  expect_error("damaged.npz", damaged, "member 'mu.npy': ZIP bad CRC");

  const std::string deflated = test::read_bytes(kDataDir / "stats16_deflated.npz");
  expect_error("cut_deflated.npz", deflated.substr(0, deflated.size() / 2), "member 'sigma.npy'");

  // mu.npy's header claims 10^12 elements (8 TB) for 16: refused before allocating.
  const auto huge = kDataDir / "huge_shape.npz";
  EXPECT_TRUE(test::throws_with([&] { eval::load_statistics(huge); }, huge.string(),
                                {"array \"mu\": data size does not match the shape"}));

  std::string renamed = bytes;  // "mu.npy" -> "nu.npy" in the local and central headers
  for (std::size_t at = 0; (at = renamed.find("mu.npy", at)) != std::string::npos;)
    renamed[at] = 'n';
  expect_error("renamed.npz", renamed, "missing array \"mu\"");
}

}  // namespace
}  // namespace microdit
