// A model config (VAE, CLIP text tower) is checked against its weight file's tensor names and
// shapes before the model is built: a config of another size is one line naming the config.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "microdit/encoders/pipeline.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

// The message of the error `files` give. The checks' own messages (not a state dict's list of
// problems) show that they ran before the model was built.
std::string load_error(const encoders::EncoderFiles& files) {
  try {
    encoders::load_pipeline_encoders(files, at::kCPU, at::kFloat);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(EncoderConfigs, TheTinyFilesLoad) {
  test::TempDir dir("encoder-configs-ok");
  EXPECT_NO_THROW(encoders::load_pipeline_encoders(test::tiny_encoder_files(dir.path), at::kCPU,
                                                   at::kFloat));
}

// The tiny encoder files with the tiny VAE's weights beside its config with `from` replaced by
// `to`.
encoders::EncoderFiles with_vae_config(const fs::path& dir, const std::string& from,
                                       const std::string& to) {
  auto files = test::tiny_encoder_files(dir / "encoders");
  const fs::path vae = dir / "vae";
  fs::create_directories(vae);
  fs::copy_file(files.vae / "diffusion_pytorch_model.safetensors",
                vae / "diffusion_pytorch_model.safetensors");
  test::write_bytes(vae / "config.json",
                    test::replace_once(test::read_bytes(files.vae / "config.json"), from, to));
  files.vae = vae;
  return files;
}

TEST(EncoderConfigs, AVaeConfigAskingForHugeBlocksIsRefusedBeforeBuilding) {
  test::TempDir dir("encoder-configs-vae");
  const auto files =
      with_vae_config(dir.path, "\"layers_per_block\": 1", "\"layers_per_block\": 65536");
  EXPECT_EQ(load_error(files), (files.vae / "config.json").string() +
                                   ": layers_per_block is 65536 but the weights have 1 "
                                   "(encoder.down_blocks.0.resnets.*)");
}

TEST(EncoderConfigs, AVaeConfigWithOtherChannelsNamesTheLevel) {
  test::TempDir dir("encoder-configs-vae-channels");
  const auto files = with_vae_config(dir.path, "12\n", "16\n");  // block_out_channels [8, 16]
  EXPECT_EQ(load_error(files), (files.vae / "config.json").string() +
                                   ": block_out_channels[1] is 16 but the weights have 12 "
                                   "(encoder.down_blocks.1.resnets.0.conv2.weight)");
}

TEST(EncoderConfigs, ATextConfigOfAnotherSizeIsRefusedBeforeBuilding) {
  test::TempDir dir("encoder-configs-text");
  auto files = test::tiny_encoder_files(dir.path);
  test::write_bytes(files.text_config,
                    R"({"text_cfg": {"context_length": 77, "vocab_size": 49408, )"
                    R"("width": 32, "heads": 2, "layers": 4096}})");
  EXPECT_EQ(load_error(files),
            files.text_config.string() +
                ": the text tower's layer count is 4096 but the weights have 1 "
                "(transformer.resblocks.*)");
  test::write_bytes(files.text_config,
                    R"({"text_cfg": {"context_length": 77, "vocab_size": 49408, )"
                    R"("width": 64, "heads": 2, "layers": 1}})");
  EXPECT_EQ(load_error(files),
            files.text_config.string() +
                ": the text tower's width is 64 but the weights have 32 (token_embedding.weight)");
}

// A value the config readers refuse is one line starting with the config's path.
TEST(EncoderConfigs, ATextConfigErrorNamesTheFile) {
  test::TempDir dir("encoder-configs-text-value");
  auto files = test::tiny_encoder_files(dir.path);
  test::write_bytes(files.text_config, R"({"text_cfg": {"width": "x"}})");
  EXPECT_EQ(load_error(files),
            files.text_config.string() + ": CLIP text config: width must be an integer, got \"x\"");
  test::write_bytes(files.text_config, R"({"hidden_size": 32, "hidden_act": "relu"})");  // HF form
  EXPECT_EQ(load_error(files).find(files.text_config.string() + ": CLIP text config: hidden_act"),
            0u)
      << load_error(files);
}

}  // namespace
}  // namespace microdit
