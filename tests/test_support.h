// Shared test helpers: the official reference set and small model configs.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "microdit/encoders/pipeline.h"
#include "microdit/io/json.h"
#include "microdit/model/config.h"
#include "microdit/parity/reference_check.h"
#include "microdit/train/train_step.h"

namespace microdit::test {

// Where the checkout, the official reference set and the built tools are. Only test_support.cpp
// is compiled with these paths, so that the other test objects of a fresh clone elsewhere are the
// same compilation and ccache reuses them.
std::filesystem::path source_dir();
std::filesystem::path reference_dir();
std::string tool(std::string_view name);  // the path of the built tool `name`, e.g. microdit-train

// TF32 off in cuBLAS while one lives (float32 comparisons on a GPU), the previous setting after.
struct NoTF32 {
  NoTF32() : previous(at::globalContext().allowTF32CuBLAS()) {
    at::globalContext().setAllowTF32CuBLAS(false);
  }
  ~NoTF32() { at::globalContext().setAllowTF32CuBLAS(previous); }
  bool previous;
};

// Largest elementwise difference relative to the largest reference magnitude, in float64.
inline double max_relative(const at::Tensor& ours, const at::Tensor& ref) {
  return (ours.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>() /
         ref.to(at::kDouble).abs().max().item<double>();
}

// out (detached), then the gradients of `inputs` for out's upstream gradient g; the graph is
// kept (runs compared may share part of it).
std::vector<at::Tensor> output_and_grads(const at::Tensor& out,
                                         const std::vector<at::Tensor>& inputs,
                                         const at::Tensor& g);

// Whether a node of the autograd graph behind t has `name` in its name (which path ran).
bool graph_has(const at::Tensor& t, const std::string& name);

// Each of `ours` within a rounding of `ref`'s tensor: relative to its largest value, `float_bound`
// in float32 and 2^-7 in bf16 (`type`); in bf16 with `few_apart` also at most 1% of the elements
// different (a missed intermediate rounding puts a fifth or more apart).
void expect_within_a_rounding(const std::vector<at::Tensor>& ours,
                              const std::vector<at::Tensor>& ref, at::ScalarType type,
                              double float_bound = 1e-6, bool few_apart = true);

// Loaded once per test binary: config.json and cases.safetensors of the official tiny set.
const parity::ReferenceSet& reference_set();

// A small config with every feature on: mixer of another width, MoE in backbone and mixer.
model::DiTConfig small_config();

// What tests of training steps start from: a DiT of small_config() and its AdamW (lr 1e-3, fused
// or not) on `device`, one batch of 4 samples, mask ratio 0.5 in float32 (no autocast); the
// global generator is seeded with `seed` first.
struct TrainStepSetup {
  model::DiT dit{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  at::Tensor x0, y;  // (4,C,H,W) and (4,1,77,Cy) on the device
  train::TrainStepOptions options;
  // Samples [first, first + count) of x0 and y with their draws for `step` (as the trainer's
  // per-sample draws, no caption dropped), on the device.
  train::MicroBatchInput input(int64_t step, int64_t first = 0, int64_t count = 4) const;
  // The step as options say, over this setup's model and AdamW; `buckets` syncs the gradients.
  std::unique_ptr<train::TrainStep> make_step(train::GradientBuckets* buckets = nullptr);
};
TrainStepSetup train_step_setup(at::Device device, bool fused_adamw, uint64_t seed = 3);

// Whole-file reads and writes in binary mode (a missing file reads as empty).
std::string read_bytes(const std::filesystem::path& path);
void write_bytes(const std::filesystem::path& path, std::string_view bytes);

// `text` with the first `from` replaced by `to`; a test failure names `from` when it is absent.
std::string replace_once(std::string text, std::string_view from, std::string_view to);

// Every record of the run directory's metrics.jsonl, in file order (none when it is missing).
std::vector<io::Json> metrics_records(const std::filesystem::path& run_dir);

// A fresh empty directory under the system temporary directory, named after `name` and the
// process, removed with its contents when the object goes.
struct TempDir {
  explicit TempDir(const std::string& name);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path path;
};

// A whole training config: a tiny model (dim 32, depth 2, MoE, patch-mixer) on the built-in data
// (8x8 RGB, 64 samples), CPU, batch 8, lr 1e-3 with one warmup step, clipping at 1, mask 0.5,
// quiet logs, no checkpoints before the end, run directory `dir`.
std::string tiny_builtin_train_yaml(const std::filesystem::path& dir, int64_t steps);

// The `model:` section of a tiny MicroDiT for the tiny encoders' output: 8x8 latents with 4
// channels (16 px images through the tiny VAE), 32-wide captions.
std::string tiny_latent_model_yaml();

// The `model:` section of a tiny MicroDiT for the MDS fixtures of tests/data/mds: 4x4 latents with
// 4 channels, 8-wide captions.
std::string mds_fixture_model_yaml();

// Tiny random encoders for pipeline tests: the diffusers-made tiny VAE of tests/data/vae/tiny
// (4 latent channels, factor 2), a random CLIP text tower (width 32, one layer, the real 49,408
// vocabulary) written to `dir` in open_clip layout with its model config, and the real tokenizer.
encoders::EncoderFiles tiny_encoder_files(const std::filesystem::path& dir);

// A miniature COCO-2014 validation set in `dir`: captions_val2014.json with `images` captioned
// images (ids 100, 103, 106, ...; image k has k % 3 + 1 captions "a photo of thing k, take j")
// plus one image without captions, and val2014/<file_name> PNGs of `size` x `size` random pixels.
void write_tiny_coco(const std::filesystem::path& dir, int64_t images, int64_t size = 24);

// util::remove_tree (not std::filesystem::remove_all, which crashes against the CUDA libtorch).
void remove_tree(const std::filesystem::path& path);

// Passes when `f` throws an E (std::runtime_error unless given) whose message starts with
// `prefix` and contains every piece.
template <class E = std::runtime_error, class F,
          class Pieces = std::initializer_list<std::string_view>>
testing::AssertionResult throws_with(F&& f, std::string_view prefix, const Pieces& pieces) {
  try {
    f();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (dynamic_cast<const E*>(&e) == nullptr) {
      return testing::AssertionFailure() << "threw another exception type: " << message;
    }
    if (!message.starts_with(prefix)) {
      return testing::AssertionFailure()
             << "message \"" << message << "\" does not start with \"" << prefix << "\"";
    }
    for (std::string_view piece : pieces) {
      if (message.find(piece) == std::string::npos) {
        return testing::AssertionFailure()
               << "message \"" << message << "\" lacks \"" << piece << "\"";
      }
    }
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "did not throw";
}

// A TCP port on the loopback interface that the kernel just gave out and released: free now,
// unlike a port derived from the process id, which may be one of a client connection.
int free_port();

}  // namespace microdit::test
