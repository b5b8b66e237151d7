// Tests for the EMA of model weights (mosaicml Composer semantics on the global step counter).
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <stdexcept>

#include "microdit/io/state_dict.h"
#include "microdit/train/ema.h"

namespace microdit::train {
namespace {

// A Linear plus a float buffer (like pos_embed) and an integer buffer (a counter).
struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    proj = register_module("proj", torch::nn::Linear(3, 2));
    pos_embed = register_buffer("pos_embed", at::randn({1, 4, 2}));  // (1, T, D)
    counter = register_buffer("counter", at::zeros({}, at::kLong));
  }
  torch::nn::Linear proj{nullptr};
  at::Tensor pos_embed, counter;
};
TORCH_MODULE(Tiny);

// Sets every floating tensor of the model to a value depending on the step, like training would.
void fake_optimizer_step(Tiny& model, int64_t step) {
  at::NoGradGuard no_grad;
  model->proj->weight.add_(0.1 * step);
  model->proj->bias.mul_(-1.5).add_(step);
  model->pos_embed.add_(0.01);
  model->counter.fill_(step);
}

io::TensorMap snapshot(const torch::nn::Module& model) {
  io::TensorMap copy = io::state_dict(model);
  for (auto& [name, tensor] : copy) tensor = tensor.clone();
  return copy;
}

TEST(EMA, DoesNothingBeforeTheStartStep) {
  Tiny model;
  EMA ema(0.9, 5);
  for (int64_t step = 1; step < 5; ++step) ema.update(*model, step);
  EXPECT_FALSE(ema.active());
  EXPECT_TRUE(ema.state().empty());
  EXPECT_THROW(ema.copy_to(*model), std::runtime_error);
}

TEST(EMA, CopiesParametersAndBuffersAtTheFirstStepAtOrAfterStart) {
  Tiny model;
  EMA ema(0.9, 5);
  ema.update(*model, 4);
  fake_optimizer_step(model, 5);
  ema.update(*model, 5);
  ASSERT_TRUE(ema.active());
  const auto weights = io::state_dict(*model);
  ASSERT_EQ(ema.state().size(), 4u);  // proj.weight, proj.bias, pos_embed, counter
  for (const auto& [name, tensor] : weights) {
    ASSERT_TRUE(ema.state().count(name)) << name;
    EXPECT_TRUE(at::equal(ema.state().at(name), tensor)) << name;
    EXPECT_FALSE(ema.state().at(name).is_same(tensor)) << name << " shares storage";
  }
  // Later changes to the model do not show through the copy.
  const auto copied = ema.state().at("proj.weight").clone();
  at::NoGradGuard no_grad;
  model->proj->weight.add_(100.0);
  EXPECT_TRUE(at::equal(ema.state().at("proj.weight"), copied));
}

// Stage 4 continues stage 3 at step 50K with start 1K: the first update copies at once.
TEST(EMA, AContinuedStagePastTheStartCopiesAtItsFirstUpdate) {
  Tiny model;
  EMA ema(0.9975, 1000);
  fake_optimizer_step(model, 50001);
  ema.update(*model, 50001);
  ASSERT_TRUE(ema.active());
  EXPECT_TRUE(at::equal(ema.state().at("proj.weight"), model->proj->weight));
}

// Hand computation in double: copy at step 3, then ema = s ema + (1 - s) w for steps 4..8.
TEST(EMA, AveragesParametersAndFloatBuffersAfterTheCopy) {
  Tiny model;
  const double s = 0.75;
  EMA ema(s, 3);
  std::map<std::string, at::Tensor> expected;
  for (int64_t step = 1; step <= 8; ++step) {
    fake_optimizer_step(model, step);
    ema.update(*model, step);
    const auto weights = snapshot(*model);
    for (const auto& [name, w] : weights) {
      const auto w64 = w.to(at::kDouble);
      if (step == 3) {
        expected[name] = w64;
      } else if (step > 3) {
        expected[name] = name == "counter" ? w64 : s * expected[name] + (1 - s) * w64;
      }
    }
  }
  for (const auto& [name, value] : expected) {
    const auto got = ema.state().at(name).to(at::kDouble);
    EXPECT_TRUE(at::allclose(got, value, 1e-6, 1e-6)) << name << "\n" << got << "\n" << value;
  }
  // The EMA lags the weights: it is not simply the last weights.
  EXPECT_FALSE(at::allclose(ema.state().at("pos_embed"), model->pos_embed));
  EXPECT_EQ(ema.state().at("counter").item<int64_t>(), 8);  // integer buffers are copied
}

TEST(EMA, SmoothingZeroTracksTheWeightsAndOneFreezesThem) {
  Tiny model;
  EMA ema(1.0, 0);
  ema.update(*model, 0);
  const auto first = snapshot(*model);
  fake_optimizer_step(model, 1);
  ema.update(*model, 1);
  EXPECT_TRUE(at::allclose(ema.state().at("proj.bias"), first.at("proj.bias")));
  ema.set_smoothing(0.0);
  fake_optimizer_step(model, 2);
  ema.update(*model, 2);
  EXPECT_TRUE(at::allclose(ema.state().at("proj.bias"), model->proj->bias));
  EXPECT_THROW(ema.set_smoothing(1.5), std::invalid_argument);
}

TEST(EMA, StateRoundTripsIntoANewEmaAndCopyToLoadsTheModel) {
  Tiny model;
  EMA ema(0.5, 0);
  ema.update(*model, 1);
  fake_optimizer_step(model, 2);
  ema.update(*model, 2);

  EMA resumed(0.9975, 1000);  // the continued stage's own smoothing and start
  resumed.load_state(ema.state());
  ASSERT_TRUE(resumed.active());
  EXPECT_FALSE(resumed.state().at("proj.weight").is_same(ema.state().at("proj.weight")));
  fake_optimizer_step(model, 3);
  ema.set_smoothing(0.9975);
  ema.update(*model, 3);
  resumed.update(*model, 3);  // started already: averages although 3 < its start step
  for (const auto& [name, tensor] : ema.state()) {
    EXPECT_TRUE(at::equal(resumed.state().at(name), tensor)) << name;
  }

  Tiny target;
  resumed.copy_to(*target);
  for (const auto& [name, tensor] : io::state_dict(*target)) {
    EXPECT_TRUE(at::equal(tensor, resumed.state().at(name))) << name;
  }
}

TEST(EMA, AModelThatDoesNotMatchTheStateIsNamed) {
  Tiny model;
  EMA ema(0.9, 0);
  io::TensorMap wrong = snapshot(*model);
  wrong["proj.weight"] = at::zeros({5, 5});
  ema.load_state(wrong);
  try {
    ema.update(*model, 1);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("proj.weight"), std::string::npos) << e.what();
  }
}

// The model computes with the EMA's tensors while the guard lives (no copy: the same storage) and
// with its own, unchanged, after it.
TEST(EMA, WeightsInPlaceSwapsTheDataAndPutsItBack) {
  Tiny model;
  EMA ema(0.5, 0);
  ema.update(*model, 0);
  fake_optimizer_step(model, 1);
  ema.update(*model, 1);
  const io::TensorMap own = snapshot(*model);
  const at::Tensor input = at::randn({2, 3});
  const at::Tensor own_output = model->proj(input);
  {
    EMAWeightsInPlace swapped(*model, ema);
    EXPECT_EQ(model->proj->weight.data_ptr(), ema.state().at("proj.weight").data_ptr());
    EXPECT_EQ(model->pos_embed.data_ptr(), ema.state().at("pos_embed").data_ptr());
    EXPECT_TRUE(model->proj->weight.requires_grad());
    at::Tensor expected = at::linear(input, ema.state().at("proj.weight"), ema.state().at("proj.bias"));
    EXPECT_TRUE(at::allclose(model->proj(input), expected));
  }
  for (const auto& [name, tensor] : io::state_dict(*model)) {
    EXPECT_TRUE(at::equal(tensor, own.at(name))) << name;
  }
  EXPECT_TRUE(at::equal(model->proj(input), own_output));
  EMA not_started(0.5, 10);
  EXPECT_THROW(EMAWeightsInPlace(*model, not_started), std::runtime_error);
}

}  // namespace
}  // namespace microdit::train
