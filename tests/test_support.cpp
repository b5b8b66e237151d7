#include "test_support.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "microdit/io/png.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/train/optimizer.h"
#include "microdit/util/remove_tree.h"

namespace microdit::test {

std::filesystem::path source_dir() { return MICRODIT_SOURCE_DIR; }
std::filesystem::path reference_dir() { return MICRODIT_REFERENCE_DIR; }
std::string tool(std::string_view name) {
  return (std::filesystem::path(MICRODIT_TOOLS_DIR) / name).string();
}

void remove_tree(const std::filesystem::path& path) { util::remove_tree(path); }

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string replace_once(std::string text, std::string_view from, std::string_view to) {
  const size_t at = text.find(from);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no \"" << from << "\" to replace";
    return text;
  }
  return text.replace(at, from.size(), to);
}

std::vector<io::Json> metrics_records(const std::filesystem::path& run_dir) {
  std::vector<io::Json> records;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    records.push_back(io::parse_json(line, "metrics.jsonl"));
  }
  return records;
}

TempDir::TempDir(const std::string& name)
    : path(std::filesystem::temp_directory_path() /
           ("microdit_" + name + "_" + std::to_string(::getpid()))) {
  remove_tree(path);
  std::filesystem::create_directories(path);
}

TempDir::~TempDir() { remove_tree(path); }

std::string tiny_builtin_train_yaml(const std::filesystem::path& dir, int64_t steps) {
  return R"(
run: {dir: )" +
         dir.string() +
         R"(, device: cpu, log_every: 1000, checkpoint_every: 0, keep_checkpoints: 5}
model:
  arch: custom
  dit: {input_size: 8, patch_size: 2, in_channels: 3, caption_channels: 16, dim: 32, depth: 2,
        head_dim: 16, multiple_of: 16, qkv_multipliers: [1.0], ffn_multipliers: [2.0],
        patch_mixer_depth: 1, patch_mixer_dim: 32, patch_mixer_mlp_ratio: 2.0, use_bias: false,
        num_experts: 2, expert_capacity: 1.0, experts_every_n: 2}
optim: {steps: )" +
         std::to_string(steps) + R"(, batch_size: 8, lr: 0.001, schedule: constant_with_warmup,
        warmup_steps: 1, clip_norm: 1.0, mask_ratio: 0.5, caption_drop_prob: 0.2}
data: {kind: builtin, builtin_samples: 64, builtin_palette: 3, builtin_image_size: 8,
       builtin_caption_len: 8, builtin_caption_channels: 16}
sample: {steps: 2, cfg: 2.0}
)";
}

std::string tiny_latent_model_yaml() {
  return R"(
model:
  arch: custom
  dit: {input_size: 8, patch_size: 2, in_channels: 4, caption_channels: 32, dim: 32, depth: 2,
        head_dim: 16, multiple_of: 16, qkv_multipliers: [1.0], ffn_multipliers: [2.0],
        patch_mixer_depth: 1, patch_mixer_dim: 32, use_bias: false, num_experts: 2,
        expert_capacity: 1.0, experts_every_n: 2}
)";
}

std::string mds_fixture_model_yaml() {
  return R"(
model:
  arch: custom
  dit: {input_size: 4, patch_size: 2, in_channels: 4, caption_channels: 8, dim: 32, depth: 2,
        head_dim: 16, multiple_of: 16, qkv_multipliers: [1.0], ffn_multipliers: [2.0],
        patch_mixer_depth: 1, patch_mixer_dim: 32, use_bias: false, num_experts: 2,
        expert_capacity: 1.0, experts_every_n: 2}
)";
}

encoders::EncoderFiles tiny_encoder_files(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  encoders::CLIPTextConfig c;
  c.width = 32;
  c.heads = 2;
  c.layers = 1;
  encoders::CLIPTextEncoder encoder(c);
  {
    at::NoGradGuard no_grad;
    at::manual_seed(11);
    for (auto& p : encoder->parameters()) p.normal_(0.0, 0.05);  // the module leaves some unset
  }
  io::save_safetensors(dir / "text.safetensors", io::state_dict(*encoder));
  write_bytes(dir / "open_clip_config.json",
              R"({"quick_gelu": true, "text_cfg": {"context_length": 77, "vocab_size": 49408, )"
              R"("width": 32, "heads": 2, "layers": 1}})");
  const std::filesystem::path data = source_dir() / "tests" / "data";
  return {data / "vae" / "tiny", dir / "text.safetensors", dir / "open_clip_config.json",
          data / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"};
}

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

TrainStepSetup train_step_setup(at::Device device, bool fused_adamw, uint64_t seed) {
  at::manual_seed(seed);
  TrainStepSetup s{model::DiT(small_config())};
  s.dit->to(device);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : s.dit->named_parameters()) named.emplace_back(item.key(), item.value());
  train::AdamWSettings adamw;
  adamw.lr = 1e-3;
  adamw.fused = fused_adamw;
  s.optimizer = train::make_adamw(named, adamw);
  const auto& c = s.dit->config;
  s.x0 = at::randn({4, c.in_channels, c.input_size, c.input_size}, device);
  s.y = at::randn({4, 1, 77, c.caption_channels}, device);
  s.options.device = device;
  s.options.batch_size = 4;
  s.options.mask_ratio = 0.5;
  s.options.bf16 = false;  // float32: runs compared with each other agree to rounding
  return s;
}

train::MicroBatchInput TrainStepSetup::input(int64_t step, int64_t first, int64_t count) const {
  std::vector<int64_t> positions(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i) positions[static_cast<std::size_t>(i)] = first + i;
  auto draws = train::draw_samples(/*seed=*/7, step, positions, x0.sizes().slice(1),
                                   dit->config.num_patches(), /*caption_drop_prob=*/0.0);
  train::MicroBatchInput in{{x0.narrow(0, first, count), y.narrow(0, first, count), positions,
                             positions},
                            std::move(draws)};
  for (at::Tensor* t : in.tensors()) *t = t->to(x0.device());
  return in;
}

std::unique_ptr<train::TrainStep> TrainStepSetup::make_step(train::GradientBuckets* buckets) {
  return std::make_unique<train::TrainStep>(
      dit, train::TrainStepOptimizer{optimizer.get(), nullptr, buckets}, options);
}

void write_tiny_coco(const std::filesystem::path& dir, int64_t images, int64_t size) {
  std::filesystem::create_directories(dir / "val2014");
  io::Json image_list = io::Json::array(), annotations = io::Json::array();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (int64_t k = 0; k <= images; ++k) {
    const int64_t id = 100 + 3 * k;
    const std::string file = "COCO_val2014_" + std::to_string(1000000 + id) + ".png";
    io::Json image = io::Json::object();
    image["id"] = id;
    image["file_name"] = file;
    image_list.push_back(image);
    io::write_png(dir / "val2014" / file, (at::rand({size, size, 3}, gen) * 255).to(at::kByte));
    if (k == images) break;  // the last image has no caption
    for (int64_t j = 0; j < k % 3 + 1; ++j) {
      io::Json a = io::Json::object();
      a["image_id"] = id;
      a["id"] = 10 * id + j;
      a["caption"] = "a photo of thing " + std::to_string(k) + ", take " + std::to_string(j);
      annotations.push_back(a);
    }
  }
  io::Json root = io::Json::object();
  root["images"] = image_list;
  root["annotations"] = annotations;
  write_bytes(dir / "captions_val2014.json", root.dump());
}

std::vector<at::Tensor> output_and_grads(const at::Tensor& out,
                                         const std::vector<at::Tensor>& inputs,
                                         const at::Tensor& g) {
  auto grads = torch::autograd::grad({out}, inputs, {g}, /*retain_graph=*/true);
  grads.insert(grads.begin(), out.detach());
  return grads;
}

bool graph_has(const at::Tensor& t, const std::string& name) {
  std::vector<torch::autograd::Node*> todo{t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!todo.empty()) {
    auto* node = todo.back();
    todo.pop_back();
    if (!node || !seen.insert(node).second) continue;
    if (node->name().find(name) != std::string::npos) return true;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return false;
}

void expect_within_a_rounding(const std::vector<at::Tensor>& ours,
                              const std::vector<at::Tensor>& ref, at::ScalarType type,
                              double float_bound, bool few_apart) {
  ASSERT_EQ(ours.size(), ref.size());
  const bool low = type != at::kFloat;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    EXPECT_LE(max_relative(ours[i], ref[i]), low ? std::ldexp(1.0, -7) : float_bound)
        << "tensor " << i;
    if (low && few_apart)
      EXPECT_LE(ours[i].ne(ref[i]).to(at::kDouble).mean().item<double>(), 0.01) << "tensor " << i;
  }
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace microdit::test
