// Tests for state_dict / load_state_dict on LibTorch modules.
#include <gtest/gtest.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <unistd.h>

#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "test_support.h"

namespace microdit::io {
namespace {

namespace fs = std::filesystem;

struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(std::int64_t width) {
    w1 = register_parameter("w1", at::randn({width, width}));  // (D, D)
    scale = register_buffer("scale", at::rand({width}));       // (D)
  }
  at::Tensor w1, scale;
};
TORCH_MODULE(Block);

// Names like the official DiT: proj.weight, blocks.<i>.w1, a top-level pos_embed buffer.
struct TinyModelImpl : torch::nn::Module {
  TinyModelImpl(std::int64_t width, int depth) {
    proj = register_module("proj", torch::nn::Linear(width, width));
    for (int i = 0; i < depth; ++i) blocks->push_back(Block(width));
    register_module("blocks", blocks);
    pos_embed = register_buffer("pos_embed", at::randn({1, 3, width}));  // (1, T, D)
  }
  torch::nn::Linear proj{nullptr};
  torch::nn::ModuleList blocks;
  at::Tensor pos_embed;
};
TORCH_MODULE(TinyModel);

testing::AssertionResult throws_with(const std::function<void()>& f,
                                     std::initializer_list<std::string_view> pieces) {
  return test::throws_with(f, /*prefix=*/"", pieces);
}

// Deep copies, so later changes to the model do not show through.
TensorMap snapshot(const torch::nn::Module& module) {
  TensorMap copy = state_dict(module);
  for (auto& [key, tensor] : copy) tensor = tensor.clone();
  return copy;
}

bool same_values(const TensorMap& a, const TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [key, tensor] : a) {
    if (!b.contains(key) || !at::equal(tensor, b.at(key))) return false;
  }
  return true;
}

TEST(StateDict, UsesDottedPyTorchNames) {
  TinyModel model(8, 2);
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : state_dict(*model)) keys.push_back(key);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"blocks.0.scale", "blocks.0.w1", "blocks.1.scale",
                                      "blocks.1.w1", "pos_embed", "proj.bias", "proj.weight"}));
}

TEST(StateDict, TensorsAreDetachedViewsOfTheModel) {
  TinyModel model(8, 1);
  const TensorMap tensors = state_dict(*model);
  EXPECT_FALSE(tensors.at("proj.weight").requires_grad());
  EXPECT_TRUE(tensors.at("proj.weight").is_alias_of(model->proj->weight));
}

TEST(StateDict, LoadCopiesEveryTensor) {
  TinyModel source(8, 2), target(8, 2);
  load_state_dict(*target, state_dict(*source));
  EXPECT_TRUE(same_values(snapshot(*target), snapshot(*source)));
  EXPECT_TRUE(target->proj->weight.requires_grad());
  EXPECT_FALSE(target->proj->weight.is_alias_of(source->proj->weight));
}

TEST(StateDict, RoundTripsThroughSafetensors) {
  TinyModel source(8, 2), target(8, 2);
  const fs::path path =
      fs::temp_directory_path() / ("microdit-state-dict-" + std::to_string(::getpid()) + ".st");
  save_safetensors(path, state_dict(*source));
  load_state_dict(*target, load_safetensors(path));
  fs::remove(path);
  EXPECT_TRUE(same_values(snapshot(*target), snapshot(*source)));
}

TEST(StateDict, ConvertsDtype) {
  TinyModel model(4, 1);
  TensorMap doubles = snapshot(*model);
  for (auto& [key, tensor] : doubles) tensor = at::full_like(tensor, 0.25, at::kDouble);
  load_state_dict(*model, doubles);
  EXPECT_EQ(model->proj->weight.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(model->proj->weight, at::full({4, 4}, 0.25f)));
}

TEST(StateDict, LoadsCpuTensorsIntoACudaModel_CUDA) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  TinyModel source(8, 2), target(8, 2);
  target->to(at::kCUDA);
  load_state_dict(*target, state_dict(*source));
  EXPECT_TRUE(target->proj->weight.is_cuda());
  EXPECT_TRUE(at::equal(target->proj->weight.cpu(), source->proj->weight));
  EXPECT_TRUE(at::equal(target->pos_embed.cpu(), source->pos_embed));
}

TEST(StateDict, ReportsEveryProblemAndChangesNothing) {
  TinyModel model(8, 2);
  const TensorMap before = snapshot(*model);
  TensorMap tensors = snapshot(*model);
  for (auto& [key, tensor] : tensors) tensor = tensor + 1;
  tensors.erase("blocks.1.w1");
  tensors["blocks.2.w1"] = at::zeros({8, 8});
  tensors["blocks.0.w1"] = at::zeros({4, 8});
  EXPECT_TRUE(throws_with([&] { load_state_dict(*model, tensors); },
                          {"load_state_dict: 3 problems, the first: checkpoint tensor blocks.0.w1 has shape [4,8], model expects [8,8]\n",
                           "\n  checkpoint tensor blocks.0.w1 has shape [4,8], model expects [8,8]",
                           "\n  missing key blocks.1.w1 (model expects shape [8,8])",
                           "\n  unexpected key blocks.2.w1 (shape [8,8]) is not in the model"}));
  EXPECT_TRUE(same_values(snapshot(*model), before));
}

TEST(StateDict, NonStrictAllowsMissingAndUnexpectedButNotShapes) {
  TinyModel model(8, 1);
  TensorMap tensors = snapshot(*model);
  tensors.erase("pos_embed");
  tensors["extra"] = at::zeros({1});
  LoadOptions lenient;
  lenient.strict = false;
  EXPECT_NO_THROW(load_state_dict(*model, tensors, lenient));
  tensors["proj.bias"] = at::zeros({9});
  EXPECT_TRUE(throws_with([&] { load_state_dict(*model, tensors, lenient); },
                          {"load_state_dict: 1 problem, the first: checkpoint tensor proj.bias has shape [9]"}));
}

TEST(StateDict, IgnoredKeysAreNeitherRequiredNorLoaded) {
  TinyModel model(8, 1);
  const at::Tensor pos_embed = model->pos_embed.clone();
  TensorMap tensors = snapshot(*model);
  tensors.erase("pos_embed");
  const LoadOptions options{.ignore_keys = {"pos_embed", "ema.pos_embed"}};
  EXPECT_NO_THROW(load_state_dict(*model, tensors, options));
  tensors["pos_embed"] = at::zeros({5});  // wrong shape, but ignored
  tensors["ema.pos_embed"] = at::zeros({1});
  EXPECT_NO_THROW(load_state_dict(*model, tensors, options));
  EXPECT_TRUE(at::equal(model->pos_embed, pos_embed));
}

}  // namespace
}  // namespace microdit::io
