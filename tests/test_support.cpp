#include "test_support.h"

#include <unistd.h>

#include <fstream>
#include <iterator>

#include "microdit/util/remove_tree.h"

namespace microdit::test {

void remove_tree(const std::filesystem::path& path) { util::remove_tree(path); }

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TempDir::TempDir(const std::string& name)
    : path(std::filesystem::temp_directory_path() /
           ("microdit_" + name + "_" + std::to_string(::getpid()))) {
  remove_tree(path);
  std::filesystem::create_directories(path);
}

TempDir::~TempDir() { remove_tree(path); }

const parity::ReferenceSet& reference_set() {
  static const parity::ReferenceSet ref = parity::load_reference_set(reference_dir());
  return ref;
}

model::DiTConfig small_config() {
  model::DiTConfig c;
  c.input_size = 8;
  c.patch_size = 2;
  c.in_channels = 4;
  c.dim = 64;
  c.depth = 4;
  c.head_dim = 16;
  c.multiple_of = 32;
  c.caption_channels = 24;
  c.qkv_multipliers = {0.5, 1.0};
  c.ffn_multipliers = {1.0, 4.0};
  c.patch_mixer_depth = 2;
  c.patch_mixer_dim = 48;
  c.patch_mixer_mlp_ratio = 4.0;
  c.use_bias = false;
  c.num_experts = 4;
  c.expert_capacity = 2.0;
  c.experts_every_n = 2;
  return c;
}

}  // namespace microdit::test
