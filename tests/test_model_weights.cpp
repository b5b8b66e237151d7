// Loading official weights into our DiT: both file formats, and a checkpoint of another shape.
#include <gtest/gtest.h>

#include <filesystem>

#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/io/torch_checkpoint.h"
#include "microdit/model/microdit.h"
#include "test_support.h"

namespace microdit {
namespace {

TEST(ModelWeights, OfficialStateDictKeysMatchOurs) {
  const auto official = io::load_safetensors(test::reference_dir() / "weights.safetensors");
  model::DiT dit(test::reference_set().config);
  const auto ours = io::state_dict(*dit);
  ASSERT_EQ(ours.size(), official.size());
  for (const auto& [name, tensor] : official) {
    auto it = ours.find(name);
    ASSERT_NE(it, ours.end()) << "we have no tensor named " << name;
    EXPECT_EQ(it->second.sizes(), tensor.sizes()) << name;
  }
}

TEST(ModelWeights, CheckpointOfAnotherShapeIsRejectedAndNothingChanges) {
  auto other = test::reference_set().config;
  other.num_experts = 8;  // the official file has 4 experts
  model::DiT dit(other);
  const auto before = io::state_dict(*dit);
  std::map<std::string, at::Tensor> snapshot;
  for (const auto& [name, t] : before) snapshot[name] = t.clone();
  for (const char* file : {"weights.safetensors", "weights.pt"}) {
    const auto path = test::reference_dir() / file;
    const auto weights = std::string(file).ends_with(".pt") ? io::load_torch_state_dict(path)
                                                            : io::load_safetensors(path);
    try {
      io::load_state_dict(*dit, weights);
      FAIL() << "loading a 4-expert checkpoint into an 8-expert model must fail";
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("blocks.1.mlp.w1 has shape [4,64,96], model expects [8,64,96]"),
                std::string::npos)
          << message;
    }
  }
  for (const auto& [name, t] : io::state_dict(*dit)) {
    EXPECT_TRUE(at::equal(t, snapshot.at(name))) << name << " was modified by a failed load";
  }
}

TEST(ModelWeights, WeightsLoadUnchangedThroughASafetensorsRoundTrip) {
  model::DiT dit(test::reference_set().config);
  io::load_state_dict(*dit, io::load_torch_state_dict(test::reference_dir() / "weights.pt"));
  const auto path = std::filesystem::temp_directory_path() / "microdit_roundtrip.safetensors";
  io::save_safetensors(path, io::state_dict(*dit));
  const auto back = io::load_safetensors(path);
  const auto official = io::load_safetensors(test::reference_dir() / "weights.safetensors");
  for (const auto& [name, t] : official) EXPECT_TRUE(at::equal(t, back.at(name))) << name;
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace microdit
