// Tests for the training config (train/config.h): YAML parsing, unknown-key suggestions, type and
// range errors, `--set` overrides, zoo vs custom models, the to_yaml round trip and the shipped
// configs/ recipes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <regex>
#include <sstream>
#include <set>

#include "microdit/model/config.h"
#include "microdit/train/config.h"
#include "microdit/util/error_message.h"
#include "test_one_line.h"
#include "test_support.h"

namespace microdit::train {
namespace {

// A small valid config: custom model that matches the built-in data, CPU, 20 steps.
const char* kTiny = R"(
run: {dir: runs/test, device: cpu}
model:
  arch: custom
  dit:
    input_size: 16
    in_channels: 3
    caption_channels: 32
    dim: 64
    depth: 2
    head_dim: 32
    multiple_of: 32
    qkv_multipliers: [1.0]
    ffn_multipliers: [2.0]
    patch_mixer_depth: 1
    patch_mixer_dim: 64
    num_experts: 2
    expert_capacity: 2.0
optim: {steps: 20, batch_size: 8}
)";

// Passes when `fn` throws std::invalid_argument whose message contains every piece.
testing::AssertionResult throws_with(const std::function<void()>& fn,
                                     const std::vector<std::string>& pieces) {
  return test::throws_with<std::invalid_argument>(fn, "", pieces);
}

testing::AssertionResult parse_fails(const std::string& yaml,
                                     const std::vector<std::string>& pieces) {
  return throws_with([&] { parse_train_config(yaml, {}, "configs/x.yaml"); }, pieces);
}

testing::AssertionResult override_fails(const std::string& override_text,
                                        const std::vector<std::string>& pieces) {
  return throws_with([&] { parse_train_config(kTiny, {override_text}); }, pieces);
}

TrainConfig tiny(const std::vector<std::string>& overrides = {}) {
  return parse_train_config(kTiny, overrides);
}

TEST(TrainConfig, MissingKeysKeepDefaults) {
  const TrainConfig parsed = parse_train_config("data: {kind: safetensors, path: shards}\n");
  TrainConfig expected;
  expected.data.kind = "safetensors";
  expected.data.path = "shards";
  EXPECT_EQ(to_yaml(parsed), to_yaml(expected));
  EXPECT_EQ(parsed.model.arch, "MicroDiT_XL_2");
  EXPECT_EQ(parsed.optim.ema.smoothing, 0.99975);
  EXPECT_FALSE(parsed.optim.ema.enabled);
  EXPECT_EQ(parsed.optim.init_ignore_keys, std::vector<std::string>{"pos_embed"});
  EXPECT_EQ(parsed.edm.P_mean, -0.6);
  EXPECT_TRUE(std::isinf(parsed.edm.S_max));
  EXPECT_EQ(parsed.sample.cfg, 5.0);
}

TEST(TrainConfig, EmptySectionKeepsDefaults) {
  const TrainConfig parsed = parse_train_config(std::string(kTiny) + "sample:\nedm:\n");
  EXPECT_EQ(to_yaml(parsed), to_yaml(tiny()));
}

TEST(TrainConfig, ReadsEveryKind) {
  const TrainConfig c = parse_train_config(
      std::string(kTiny) + R"(
edm: {P_mean: 0, P_std: 0.6, S_max: .inf, S_min: 0.05, num_steps: 30}
sample: {prompts: ["a red circle", 'two: squares'], cfg: 4, seed: -3}
data: {latents_key: lat}
)",
      {"run.seed=18446744073709551615", "optim.ema.enabled=true", "optim.ema.smoothing=0.9",
       "optim.init_ignore_keys=[pos_embed, x_embedder.proj]"});
  EXPECT_EQ(c.run.dir, "runs/test");
  EXPECT_EQ(c.run.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.model.arch, "custom");
  EXPECT_EQ(c.model.dit.dim, 64);
  EXPECT_EQ(c.model.dit.qkv_multipliers, std::vector<double>{1.0});
  EXPECT_EQ(c.model.dit.expert_capacity, 2.0);
  EXPECT_EQ(c.edm.P_mean, 0.0);
  EXPECT_EQ(c.edm.P_std, 0.6);
  EXPECT_EQ(c.edm.S_max, std::numeric_limits<double>::infinity());
  EXPECT_EQ(c.edm.num_steps, 30);
  EXPECT_EQ(c.sample.prompts, (std::vector<std::string>{"a red circle", "two: squares"}));
  EXPECT_EQ(c.sample.cfg, 4.0);
  EXPECT_EQ(c.sample.seed, -3);
  EXPECT_EQ(c.data.latents_key, "lat");
  EXPECT_TRUE(c.optim.ema.enabled);
  EXPECT_EQ(c.optim.ema.smoothing, 0.9);
  EXPECT_EQ(c.optim.init_ignore_keys, (std::vector<std::string>{"pos_embed", "x_embedder.proj"}));
  EXPECT_EQ(c.optim.steps, 20);
  EXPECT_EQ(c.optim.batch_size, 8);
}

TEST(TrainConfig, ScientificAndSignedNumbers) {
  const TrainConfig c = tiny({"optim.lr=1e-4", "optim.eps=+1.0E-8", "edm.S_max=+.inf"});
  EXPECT_EQ(c.optim.lr, 1e-4);
  EXPECT_EQ(c.optim.eps, 1e-8);
  EXPECT_TRUE(std::isinf(c.edm.S_max));
}

// "A billion laughs": ten aliases of ten aliases, nine times over, is 10^9 values to walk.
TEST(TrainConfig, YamlAliasBombIsOneLine) {
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level < 9; ++level) {
    const std::string name = std::to_string(level), previous = std::to_string(level - 1);
    yaml.append("a").append(name).append(": &a").append(name).append(" [*a").append(previous);
    for (int i = 1; i < 10; ++i) yaml.append(", *a").append(previous);
    yaml.append("]\n");
  }
  EXPECT_TRUE(test::throws_one_line<std::invalid_argument>(
      [&] { parse_train_config(yaml, {}, "bomb.yaml"); }, "bomb.yaml: ",
      {"YAML expands to more than 100000 values"}));
}

// A NUL in a key (YAML's "\0" escape) would end what() before the file's name.
TEST(TrainConfig, UnknownKeyWithANulStillNamesTheFile) {
  EXPECT_TRUE(test::throws_one_line<std::invalid_argument>(
      [] { parse_train_config("run:\n  \"a\\0b\": 1\n", {}, "nul.yaml"); }, "",
      {"unknown key 'run.a\\x00b' in nul.yaml"}));
}

// The line a tool shows for the error parsing `yaml` (as long.yaml) throws.
std::string shown_error(const std::string& yaml) {
  try {
    parse_train_config(yaml, {}, "long.yaml");
  } catch (const std::invalid_argument& e) {
    return util::error_message(e);
  }
  ADD_FAILURE() << "no error";
  return "";
}

// A long key (here 1,000 carriage returns, each shown as 4 bytes) is cut where it is quoted, so the
// shown line still ends with the file's name (tests/fuzz/crashes/train_config/long_unknown_key_*).
TEST(TrainConfig, LongUnknownKeyStillNamesTheFile) {
  std::string key = "a";
  for (int i = 0; i < 1000; ++i) key += "\\r";  // YAML's escape in a double-quoted key
  key += "b";  // not trailing: one_line drops trailing blanks
  // An explicit key ("? "): YAML limits implicit ones to 1,024 characters.
  const std::string shown = shown_error("run:\n  ? \"" + key + "\"\n  : 1\n");
  EXPECT_NE(shown.find("...' in long.yaml; did you mean"), std::string::npos) << shown;
  EXPECT_LT(shown.size(), 300u) << shown;
}

// Long values are cut too: where a validation message quotes them, and the whole message where
// another one does (tests/fuzz/crashes/train_config/long_invalid_value_*, long_model_arch_*).
TEST(TrainConfig, LongInvalidValueStillNamesTheFile) {
  const std::string bytes(1000, '\xFF');
  const std::string device = shown_error("run:\n  device: \"" + bytes + "\"\n");
  EXPECT_NE(device.find("invalid config: run.device = \"\\xff"), std::string::npos) << device;
  EXPECT_NE(device.find("...,"), std::string::npos) << device;
  EXPECT_NE(device.find("(in long.yaml)"), std::string::npos) << device;
  EXPECT_LT(device.size(), 300u) << device;
  const std::string arch = shown_error("model:\n  arch: \"" + bytes + "\"\n");
  EXPECT_NE(arch.find("unknown model.arch"), std::string::npos) << arch;
  EXPECT_NE(arch.find("... (in long.yaml)"), std::string::npos) << arch;
}

TEST(TrainConfig, DeeplyNestedYamlIsOneLine) {
  const std::string yaml = "run: " + std::string(100, '[') + std::string(100, ']') + "\n";
  EXPECT_TRUE(test::throws_one_line<std::invalid_argument>(
      [&] { parse_train_config(yaml, {}, "deep.yaml"); }, "deep.yaml: ",
      {"YAML nests deeper than 64 levels"}));
}

TEST(TrainConfig, UnknownKeyNamesTheClosestKey) {
  EXPECT_TRUE(throws_with(
      [] { parse_train_config("optim:\n  warmup_step: 5\n", {}, "configs/x.yaml"); },
      {"unknown key 'optim.warmup_step' in configs/x.yaml; did you mean 'optim.warmup_steps'?"}));
  EXPECT_TRUE(parse_fails("optm: {}\n", {"unknown key 'optm'", "did you mean 'optim'?"}));
  EXPECT_TRUE(parse_fails("optim: {ema: {smothing: 0.9}}\n",
                          {"unknown key 'optim.ema.smothing'", "'optim.ema.smoothing'"}));
  EXPECT_TRUE(parse_fails("model: {dit: {qkv_multiplier: [1.0]}}\n",
                          {"'model.dit.qkv_multiplier'", "'model.dit.qkv_multipliers'"}));
  EXPECT_TRUE(parse_fails("edm: {p_mean: 0}\n", {"'edm.p_mean'", "'edm.P_mean'"}));
  EXPECT_TRUE(parse_fails("model: {zoo: {input_sise: 64}}\n", {"'model.zoo.input_size'"}));
}

TEST(TrainConfig, WrongTypesNameKeyExpectationAndValue) {
  EXPECT_TRUE(parse_fails("optim: {steps: 2.5}\n",
                          {"'optim.steps'", "configs/x.yaml", "an integer", "'2.5'"}));
  EXPECT_TRUE(parse_fails("optim: {steps: 1e3}\n", {"'optim.steps'", "an integer", "'1e3'"}));
  EXPECT_TRUE(parse_fails("optim: {lr: fast}\n", {"'optim.lr'", "a number", "'fast'"}));
  EXPECT_TRUE(parse_fails("optim: {lr: [1]}\n", {"'optim.lr'", "a number", "a list"}));
  EXPECT_TRUE(
      parse_fails("optim: {ema: {enabled: yes}}\n", {"'optim.ema.enabled'", "a boolean", "'yes'"}));
  EXPECT_TRUE(parse_fails("run: {seed: -1}\n", {"'run.seed'", "non-negative integer", "'-1'"}));
  EXPECT_TRUE(parse_fails("run: {dir: [a, b]}\n", {"'run.dir'", "a string", "a list"}));
  EXPECT_TRUE(parse_fails("model: {dit: {qkv_multipliers: 0.5}}\n",
                          {"'model.dit.qkv_multipliers'", "a list of numbers", "'0.5'"}));
  EXPECT_TRUE(parse_fails("model: {dit: {qkv_multipliers: [0.5, x]}}\n",
                          {"'model.dit.qkv_multipliers[1]'", "a number", "'x'"}));
  EXPECT_TRUE(parse_fails("optim: 3\n", {"'optim'", "a mapping", "'3'"}));
  EXPECT_TRUE(parse_fails("optim: {ema: true}\n", {"'optim.ema'", "a mapping", "'true'"}));
  EXPECT_TRUE(parse_fails("- a\n- b\n", {"a mapping", "a list"}));
  EXPECT_TRUE(parse_fails("edm: {P_std: }\n", {"'edm.P_std'", "a number", "an empty value"}));
  EXPECT_TRUE(parse_fails("optim: {steps: 99999999999999999999}\n", {"'optim.steps'"}));
}

TEST(TrainConfig, DuplicateKeysAndBadYamlAreErrors) {
  EXPECT_TRUE(parse_fails("optim: {lr: 1, lr: 2}\n", {"'optim.lr' appears twice"}));
  EXPECT_TRUE(parse_fails("optim: {lr: 1\n", {"cannot parse configs/x.yaml"}));
  EXPECT_TRUE(throws_with([] { load_train_config("/nonexistent/config.yaml"); },
                          {"cannot read config file /nonexistent/config.yaml"}));
}

TEST(TrainConfig, RangeErrorsNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"optim.mask_ratio=1", "optim.mask_ratio = 1.0, expected a value in [0, 1)"},
      {"optim.mask_ratio=-0.1", "optim.mask_ratio"},
      {"optim.lr=-1e-4", "optim.lr = -1.0e-04"},
      {"optim.weight_decay=-0.1", "optim.weight_decay"},
      {"optim.steps=0", "optim.steps = 0, expected in [1, 10^12]"},
      {"optim.warmup_steps=21", "optim.warmup_steps = 21"},
      {"optim.warmup_steps=-1", "optim.warmup_steps"},
      {"optim.alpha_f=1.5", "optim.alpha_f"},
      {"optim.alpha_f=-0.1", "optim.alpha_f"},
      {"optim.schedule=linear", "optim.schedule = \"linear\", expected constant, "},
      {"optim.precision=fp16",
       "optim.precision = \"fp16\", expected auto, bf16, bf16-fp32norm or fp32"},
      {"optim.attention_backend=flashy",
       "optim.attention_backend = \"flashy\", expected auto, cudnn, flash, efficient or math"},
      {"optim.execution=fused", "optim.execution = \"fused\", expected auto, reference or fast"},
      {"optim.caption_drop_prob=1.1", "optim.caption_drop_prob"},
      {"optim.caption_drop_prob=-0.5", "optim.caption_drop_prob"},
      {"optim.ema.smoothing=1.5", "optim.ema.smoothing"},
      {"optim.ema.smoothing=-0.1", "optim.ema.smoothing"},
      {"optim.ema.start_step=-1", "optim.ema.start_step"},
      {"optim.batch_size=0", "optim.batch_size"},
      {"optim.batch_size=2097152", "optim.batch_size = 2097152, expected in [1, 2^20]"},
      {"optim.steps=9223372036854775807", "optim.steps = 9223372036854775807, expected in [1, 10^12]"},
      {"edm.num_steps=1000000", "edm.num_steps = 1000000, expected in [1, 100000]"},
      {"data.builtin_samples=1073741824", "data.builtin_samples"},
      {"optim.micro_batch_size=-1", "optim.micro_batch_size"},
      {"optim.micro_batch_size=3", "optim.batch_size = 8, expected a multiple of world size 1"},
      {"optim.beta2=1", "optim.beta2"},
      {"optim.eps=0", "optim.eps"},
      {"optim.clip_norm=-1", "optim.clip_norm"},
      {"optim.moe_lr_scale=-1", "optim.moe_lr_scale"},
      {"optim.t_max=-1", "optim.t_max"},
      {"run.device=gpu", "run.device = \"gpu\", expected auto, cpu, cuda or cuda:N"},
      {"run.device='cuda:'", "run.device = \"cuda:\""},
      {"run.device=cuda:1x", "run.device"},
      {"run.device=cuda:x", "run.device"},
      {"run.keep_checkpoints=0", "run.keep_checkpoints = 0, expected >= 1"},
      {"run.log_every=0", "run.log_every"},
      {"run.checkpoint_every=-1", "run.checkpoint_every"},
      {"run.sample_every=-1", "run.sample_every"},
      {"run.dir=", "run.dir"},
      {"data.kind=lmdb", "data.kind = \"lmdb\", expected builtin, safetensors, mds or synthetic"},

      {"data.kind=mds", "data.mds_dirs"},
      {"data.kind=safetensors", "data.path"},
      {"data.builtin_samples=0", "data.builtin_samples"},
      {"data.builtin_palette=1", "data.builtin_palette"},
      {"data.builtin_palette=9", "data.builtin_palette"},
      {"data.builtin_caption_len=6", "data.builtin_caption_len"},
      {"model.dit.in_channels=4", "model.dit.in_channels = 4, expected 3"},
      {"data.builtin_image_size=32", "data.builtin_image_size = 32, expected the model's"},
      {"data.builtin_caption_channels=1024", "data.builtin_caption_channels"},
      {"sample.cfg=0.5", "sample.cfg = 0.5"},
      {"sample.steps=0", "sample.steps"},
      {"sample.steps=9223372036854775807",
       "sample.steps = 9223372036854775807, expected in [1, 100000]"},
      {"model.dit.qkv_multipliers=[1e300]", "model.dit.qkv_multipliers = 1.0e+300, expected <= 64"},
      {"model.dit.ffn_multipliers=[65.0]", "model.dit.ffn_multipliers = 65.0, expected <= 64"},
      {"model.dit.depth=1000000", "model.dit.depth = 1000000, expected <= 1024"},
      // Checked before the per-block ratios are expanded to `depth` entries (2^62 of them).
      {"model.dit.depth=4611686018427387904",
       "model.dit.depth = 4611686018427387904, expected <= 1024"},
      {"model.dit.expert_capacity=2.5",
       "model.dit.expert_capacity = 2.5, expected <= num_experts (2)"},
      {"model.dit.multiple_of=1000000000", "model.dit.multiple_of = 1000000000, expected <= 65536"},
      {"sample.text_encoder=x",
       "sample.text_encoder = \"x\", expected empty with data.kind builtin"},
      {"model.dit.dim=1048576", "model.dit.dim"},
      {"edm.sigma_min=0", "edm.sigma_min"},
      {"edm.sigma_max=0.001", "edm.sigma_max"},
      {"edm.P_std=0", "edm.P_std"},
      {"edm.sigma_data=-1", "edm.sigma_data"},
      {"edm.num_steps=0", "edm.num_steps"},
      {"edm.S_churn=-1", "edm.S_churn"},
      {"edm.S_max=-1", "edm.S_max"},
      {"model.dit.in_channels=0", "model.dit.in_channels"},
      {"model.dit.qkv_multipliers=[-1.0]", "model.dit.qkv_multipliers"},
  };
  for (const auto& [override_text, piece] : cases) {
    EXPECT_TRUE(override_fails(override_text, {"invalid config: " + piece}))
        << "override " << override_text;
  }
}

// Numbers are finite: NaN nowhere, infinity only for edm.S_max (EDM's default).
TEST(TrainConfig, NonFiniteNumbersAreRefusedButForSMax) {
  for (const std::string text : {"optim.lr=.nan", "optim.eps=.inf", "sample.cfg=.inf",
                                 "model.dit.qkv_multipliers=[.inf]", "edm.P_mean=-.inf",
                                 "dist.timeout_s=.inf"}) {
    const std::string key = text.substr(0, text.find('='));
    EXPECT_TRUE(override_fails(text, {"'" + key, "expects a finite number"})) << text;
  }
  EXPECT_TRUE(parse_fails("optim: {eps: .inf}\n", {"'optim.eps'", "a finite number", "'.inf'"}));
  EXPECT_TRUE(std::isinf(tiny({"edm.S_max=.inf"}).edm.S_max));
}

// The per-operation switches that optim.execution replaced: each is refused in a file and as an
// override, naming the key that replaces it and what its values mean.
TEST(TrainConfig, ReplacedExecutionKeysNameTheirReplacement) {
  for (const std::string key :
       {"fused_norm", "fused_residual", "recompute_activations", "moe_row_dispatch",
        "fused_moe_combine", "fused_moe_dispatch", "fold_residual_grad", "fp32_weight_grads",
        "split_qk_norm", "one_pass_norm_grad", "merged_swiglu"}) {
    const std::string message = "optim." + key +
                                " was replaced by optim.execution (fast: the fused operations; "
                                "reference: the plain ops)";
    EXPECT_TRUE(override_fails("optim." + key + "=true", {message})) << key;
    EXPECT_TRUE(parse_fails("optim:\n  " + key + ": true\n", {message, "configs/x.yaml"})) << key;
  }
  EXPECT_EQ(tiny().optim.execution, "auto");
  EXPECT_EQ(tiny({"optim.execution=fast"}).optim.execution, "fast");
  EXPECT_NE(to_yaml(tiny({"optim.execution=reference"})).find("  execution: \"reference\"\n"),
            std::string::npos);
}

TEST(TrainConfig, SyntheticDataNeedsPositiveSizes) {
  EXPECT_NO_THROW(tiny({"data.kind=synthetic"}));
  EXPECT_EQ(tiny({"data.kind=synthetic"}).data.synthetic_samples, 256);
  EXPECT_TRUE(throws_with(
      [] { tiny({"data.kind=synthetic", "data.synthetic_samples=0"}); },
      {"invalid config: data.synthetic_samples = 0, expected in [1, 2^20]"}));
  EXPECT_TRUE(throws_with([] { tiny({"data.kind=synthetic", "data.caption_tokens=0"}); },
                          {"invalid config: data.caption_tokens = 0, expected in [1, 4096]"}));
}

TEST(TrainConfig, RangeErrorsNameTheSource) {
  EXPECT_TRUE(throws_with(
      [] { parse_train_config(std::string(kTiny) + "sample: {cfg: 0}\n", {}, "configs/x.yaml"); },
      {"sample.cfg", "(in configs/x.yaml)"}));
  EXPECT_TRUE(override_fails("sample.cfg=0", {"with overrides"}));
}

TEST(TrainConfig, ContinueAndInitAreExclusive) {
  EXPECT_NO_THROW(tiny({"optim.continue_from=runs/a/ckpt"}));
  EXPECT_NO_THROW(tiny({"optim.init_from=runs/a/ckpt"}));
  EXPECT_TRUE(throws_with(
      [] {
        tiny({"optim.continue_from=runs/a/ckpt", "optim.init_from=runs/b/ckpt"});
      },
      {"optim.init_from", "optim.continue_from"}));
}

TEST(TrainConfig, CosineNeedsADecayAfterWarmup) {
  EXPECT_NO_THROW(tiny({"optim.schedule=cosine_with_warmup", "optim.warmup_steps=5"}));
  EXPECT_TRUE(throws_with(
      [] {
        tiny({"optim.schedule=cosine_with_warmup", "optim.warmup_steps=5", "optim.t_max=5"});
      },
      {"optim.t_max = 5"}));
  EXPECT_TRUE(throws_with(
      [] {
        tiny({"optim.schedule=cosine_with_warmup", "optim.warmup_steps=20"});
      },
      {"optim.t_max = 0"}));
}

TEST(TrainConfig, MaskRatioMustKeepAToken) {
  EXPECT_NO_THROW(tiny({"optim.mask_ratio=0.984"}));  // 64 patches: keeps int(64*0.016) = 1
  EXPECT_TRUE(override_fails("optim.mask_ratio=0.99", {"optim.mask_ratio", "64 patches"}));
}

TEST(TrainConfig, RouteIsARangeOfBackboneBlocksWithoutAMask) {
  const auto routed = tiny({"optim.route={ratio: 0.5, start_block: 0, end_block: 1}"});
  EXPECT_EQ(routed.optim.route.ratio, 0.5);
  EXPECT_EQ(routed.optim.route.end_block, 1);
  EXPECT_TRUE(override_fails("optim.route={ratio: 0.5, start_block: 0, end_block: 1, x: 1}",
                             {"optim.route.x"}));
  EXPECT_TRUE(throws_with(
      [] {
        tiny({"optim.mask_ratio=0.5", "optim.route={ratio: 0.5, start_block: 0, end_block: 1}"});
      },
      {"optim.route.ratio = 0.5", "not both"}));
  EXPECT_TRUE(throws_with(
      [] { tiny({"optim.route={ratio: 0.5, start_block: 1, end_block: 0}"}); },
      {"optim.route.end_block = 0", "[optim.route.start_block = 1, "}));
  EXPECT_TRUE(override_fails("optim.route={ratio: 0.5, start_block: 0, end_block: 9}",
                             {"optim.route.end_block = 9"}));
  EXPECT_TRUE(override_fails("optim.route.ratio=1", {"optim.route.ratio", "[0, 1)"}));
  EXPECT_TRUE(override_fails("run.eval_steps=[5, 0]", {"run.eval_steps[1] = 0"}));
  EXPECT_TRUE(override_fails("data.val_seed=-2", {"data.val_seed = -2", "-1 for run.seed"}));
}

TEST(TrainConfig, BatchMustDivideWorldTimesMicroBatch) {
  TrainConfig c = tiny();
  c.optim.batch_size = 64;
  c.optim.micro_batch_size = 8;
  EXPECT_NO_THROW(validate(c, 8));
  EXPECT_NO_THROW(validate(c, 4));
  EXPECT_TRUE(throws_with([&] { validate(c, 3); },
                          {"optim.batch_size = 64", "world size 3", "micro_batch_size 8"}));
  c.optim.micro_batch_size = 16;
  EXPECT_TRUE(throws_with([&] { validate(c, 8); }, {"optim.batch_size = 64", "= 128"}));
  c.optim.micro_batch_size = 0;  // batch_size / world size
  EXPECT_NO_THROW(validate(c, 8));
  EXPECT_TRUE(throws_with([&] { validate(c, 3); }, {"optim.batch_size", "world size 3"}));
  EXPECT_TRUE(throws_with([&] { validate(c, 0); }, {"world size 0"}));
}

// The CUDA graph captures the bucketed all-reduce of several processes, not ZeRO-2's step.
TEST(TrainConfig, CudaGraphWithSeveralProcessesNeedsZeroStage0) {
  TrainConfig c = tiny();
  c.optim.batch_size = 64;
  c.optim.cuda_graph = true;
  EXPECT_NO_THROW(validate(c, 8));
  c.dist.zero_stage = 2;
  EXPECT_NO_THROW(validate(c, 1));
  EXPECT_TRUE(throws_with([&] { validate(c, 8); },
                          {"invalid config: optim.cuda_graph = true, expected false with "
                           "dist.zero_stage 2 in a world of 8"}));
}

TEST(TrainConfig, ModelErrorsCarryTheModelKey) {
  EXPECT_TRUE(override_fails("model.dit.dim=100", {"invalid config: model: ", "head_dim"}));
  EXPECT_TRUE(override_fails("model.dit.ffn_multipliers=[1.0, 2.0]",
                             {"invalid config: model: ", "ffn_multipliers"}));
  EXPECT_TRUE(override_fails("model.arch=MicroDiT_XXL_2",
                             {"invalid config: model: unknown model.arch 'MicroDiT_XXL_2'",
                              "custom, MicroDiT_Tiny_2, MicroDiT_XL_2", "'MicroDiT_XL_2'?"}));
}

TEST(TrainConfig, OverridesSetKeysBeforeValidation) {
  // Invalid alone (steps 0), valid once overridden: overrides apply before validation.
  const TrainConfig c = parse_train_config(
      std::string(kTiny) + "sample: {steps: 0}\n",
      {"sample.steps=7", "optim.lr=3e-4", "optim.lr=5e-4", "run.dir=runs/other",
       "model.dit.qkv_multipliers=[0.5,1.0]", "model.dit.ffn_multipliers=[1.0, 2.0]",
       "optim.ema={enabled: true, start_step: 3}", "optim.init_from=weights.safetensors",
       "optim.init_from="});
  EXPECT_EQ(c.sample.steps, 7);
  EXPECT_EQ(c.optim.lr, 5e-4);  // the later override wins
  EXPECT_EQ(c.run.dir, "runs/other");
  EXPECT_EQ(c.model.dit.qkv_multipliers, (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(c.model.dit.ffn_multipliers, (std::vector<double>{1.0, 2.0}));
  EXPECT_TRUE(c.optim.ema.enabled);
  EXPECT_EQ(c.optim.ema.start_step, 3);
  EXPECT_EQ(c.optim.init_from, "");  // an empty value clears a string
}

TEST(TrainConfig, BadOverridesAreErrors) {
  EXPECT_TRUE(override_fails("optim.warmup_step=5",
                             {"unknown key 'optim.warmup_step' in override "
                              "'optim.warmup_step=5'; did you mean 'optim.warmup_steps'?"}));
  EXPECT_TRUE(override_fails("optim.lr", {"override 'optim.lr' has no '='"}));
  EXPECT_TRUE(override_fails("optim..lr=1", {"malformed key"}));
  EXPECT_TRUE(override_fails("=1", {"malformed key"}));
  EXPECT_TRUE(
      override_fails("optim.lr.x=1", {"unknown key 'optim.lr.x'", "'optim.lr' is a value"}));
  EXPECT_TRUE(override_fails("optim.lr=abc", {"'optim.lr'", "a number", "'abc'"}));
  EXPECT_TRUE(override_fails("optim.lr=[1", {"cannot parse override 'optim.lr=[1'"}));
  EXPECT_TRUE(override_fails("optim.ema={smothing: 0.9}", {"did you mean 'optim.ema.smoothing'"}));
}

TEST(TrainConfig, ZooArchitectureUsesZooArguments) {
  const TrainConfig c = parse_train_config(
      "model: {arch: MicroDiT_XL_2, zoo: {input_size: 64, pos_interp_scale: 2}}\n"
      "data: {kind: safetensors, path: shards}\n");
  model::ZooArgs args;
  args.input_size = 64;
  args.pos_interp_scale = 2.0;
  const model::DiTConfig expected = model::MicroDiT_XL_2(args);
  const model::DiTConfig resolved = c.model.resolved();
  EXPECT_EQ(resolved.input_size, 64);
  EXPECT_EQ(resolved.pos_interp_scale, 2.0);
  EXPECT_EQ(resolved.dim, expected.dim);
  EXPECT_EQ(resolved.depth, expected.depth);
  EXPECT_EQ(resolved.qkv_multipliers, expected.qkv_multipliers);
  EXPECT_EQ(resolved.ffn_multipliers, expected.ffn_multipliers);
  EXPECT_EQ(resolved.patch_mixer_dim, 768);
  // `dit` is ignored for a zoo architecture.
  ModelSection tiny_zoo;
  tiny_zoo.arch = "MicroDiT_Tiny_2";
  tiny_zoo.dit.dim = 7;
  EXPECT_EQ(tiny_zoo.resolved().dim, 512);
}

TEST(TrainConfig, CustomArchitectureUsesDit) {
  const TrainConfig c = tiny();
  const model::DiTConfig resolved = c.model.resolved();
  EXPECT_EQ(resolved.dim, 64);
  EXPECT_EQ(resolved.depth, 2);
  EXPECT_EQ(resolved.patch_mixer_depth, 1);
  EXPECT_EQ(resolved.in_channels, 3);
  ModelSection bad;
  bad.arch = "DiT_XL_2";
  EXPECT_TRUE(throws_with([&] { bad.resolved(); },
                          {"unknown model.arch 'DiT_XL_2'", "custom, MicroDiT_Tiny_2"}));
}

TEST(TrainConfig, ToYamlRoundTripsExactly) {
  TrainConfig c = tiny();
  c.run.seed = std::numeric_limits<uint64_t>::max();
  c.run.device = "cuda:3";
  c.optim.lr = 0.1 + 0.2;  // 0.30000000000000004
  c.optim.eps = 5e-324;    // smallest subnormal
  c.optim.weight_decay = 1.0 / 3.0;
  c.optim.beta2 = 0.999;
  c.optim.alpha_f = 0.33;
  c.optim.schedule = "cosine_with_warmup";
  c.optim.warmup_steps = 3;
  c.optim.clip_norm = 1e300;
  c.optim.ema = {true, 0.99975, 25000};
  c.optim.init_from = "weights/\"odd\" path\\x.safetensors";
  c.optim.init_ignore_keys = {};
  c.edm.P_mean = -0.6;
  c.edm.S_max = std::numeric_limits<double>::infinity();
  c.edm.S_min = 0.05;
  c.model.dit.qkv_multipliers = {0.1, 0.7};
  c.model.dit.ffn_multipliers = {2.0, 1e-3};
  c.model.zoo.qkv_ratio = {0.25, 0.75};
  c.model.zoo.in_channels = 16;
  c.sample.prompts = {"a cat: \"sitting\"", "tab\there\nnewline", "caf\xc3\xa9 #1", ""};
  c.sample.seed = -42;
  c.sample.cfg = 1.0;

  const std::string text = to_yaml(c);
  const TrainConfig back = parse_train_config(text);
  EXPECT_EQ(to_yaml(back), text);
  EXPECT_EQ(back.run.seed, c.run.seed);
  EXPECT_EQ(back.optim.lr, c.optim.lr);
  EXPECT_EQ(back.optim.eps, c.optim.eps);
  EXPECT_EQ(back.optim.weight_decay, c.optim.weight_decay);
  EXPECT_EQ(back.optim.clip_norm, c.optim.clip_norm);
  EXPECT_EQ(back.optim.init_from, c.optim.init_from);
  EXPECT_TRUE(back.optim.init_ignore_keys.empty());
  EXPECT_EQ(back.edm.S_max, c.edm.S_max);
  EXPECT_EQ(back.model.dit.ffn_multipliers, c.model.dit.ffn_multipliers);
  EXPECT_EQ(back.model.zoo.qkv_ratio, c.model.zoo.qkv_ratio);
  EXPECT_EQ(back.model.zoo.in_channels, 16);
  EXPECT_EQ(back.sample.prompts, c.sample.prompts);
  EXPECT_EQ(back.sample.seed, -42);
  EXPECT_TRUE(back.optim.ema.enabled);
}

TEST(TrainConfig, ToYamlWritesEveryKeyReadably) {
  const std::string text = to_yaml(tiny());
  for (const char* line :
       {"\n  dir: \"runs/test\"\n", "\n    smoothing: 0.99975\n", "\n  S_max: .inf\n",
        "\n  eps: 1.0e-08\n", "\n    qkv_ratio: [0.5, 1.0]\n", "\n    qkv_multipliers: [1.0]\n",
        "\n  init_ignore_keys: [\"pos_embed\"]\n", "\n  prompts: []\n", "\n  seed: 0\n",
        "\n  P_mean: -0.6\n", "\nsample:\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing \"" << line << "\" in\n" << text;
  }
}

TEST(TrainConfig, ShippedConfigsLoadAndValidate) {
  const std::filesystem::path dir = test::source_dir() / "configs";
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string name = entry.path().stem().string();
    names.push_back(name);
    SCOPED_TRACE(name);
    TrainConfig c;
    ASSERT_NO_THROW(c = load_train_config(entry.path())) << name;
    const int64_t world_size = name.rfind("stage", 0) == 0 ? 8 : 1;
    EXPECT_NO_THROW(validate(c, world_size));
    // The saved resolved config of each recipe parses back to the same.
    EXPECT_EQ(to_yaml(parse_train_config(to_yaml(c))), to_yaml(c));
  }
  for (const char* expected : {"stage1_256_masked", "stage2_256_finetune", "stage3_512_masked",
                               "stage4_512_finetune", "debug_tiny", "demo"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
}

// The official recipe (paper Sec. 4 and the official configs), read from the shipped stage configs.
TEST(TrainConfig, StageConfigsFollowTheOfficialRecipe) {
  const std::filesystem::path dir = test::source_dir() / "configs";
  const TrainConfig s1 = load_train_config(dir / "stage1_256_masked.yaml");
  const TrainConfig s2 = load_train_config(dir / "stage2_256_finetune.yaml");
  const TrainConfig s3 = load_train_config(dir / "stage3_512_masked.yaml");
  const TrainConfig s4 = load_train_config(dir / "stage4_512_finetune.yaml");
  const std::vector<const TrainConfig*> stages = {&s1, &s2, &s3, &s4};
  // Micro-batches: stage 1 the official 256, the later stages twice the official 64 / 32 / 16
  // (the same function: docs/performance.md), each tiling 8 GPUs' shares of the global batch.
  const int64_t micro[] = {256, 128, 64, 32};
  const int64_t steps[] = {250000, 280000, 50000, 55000};
  const double lr[] = {2.4e-4, 8e-5, 8e-5, 8e-5};
  const double mask[] = {0.75, 0.0, 0.75, 0.0};
  const double clip[] = {0.25, 0.25, 0.5, 0.5};
  const char* schedule[] = {"cosine_with_warmup", "constant", "constant_with_warmup", "constant"};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("stage " + std::to_string(i + 1));
    const TrainConfig& c = *stages[i];
    const bool hi_res = i >= 2;
    EXPECT_EQ(c.model.arch, "MicroDiT_XL_2");
    EXPECT_EQ(c.model.zoo.input_size, hi_res ? 64 : 32);
    EXPECT_EQ(c.model.zoo.pos_interp_scale, hi_res ? 2.0 : 1.0);
    EXPECT_EQ(c.edm.P_mean, hi_res ? 0.0 : -0.6);
    EXPECT_EQ(c.edm.P_std, hi_res ? 0.6 : 1.2);
    EXPECT_EQ(c.optim.batch_size, 2048);
    EXPECT_EQ(c.optim.micro_batch_size, micro[i]);
    EXPECT_NO_THROW(validate(c, 8));
    EXPECT_EQ(c.optim.steps, steps[i]);
    EXPECT_EQ(c.optim.lr, lr[i]);
    EXPECT_EQ(c.optim.schedule, schedule[i]);
    EXPECT_EQ(c.optim.mask_ratio, mask[i]);
    EXPECT_EQ(c.optim.clip_norm, clip[i]);
    EXPECT_EQ(c.optim.weight_decay, 0.1);
    EXPECT_EQ(c.optim.beta1, 0.9);
    EXPECT_EQ(c.optim.beta2, 0.999);
    EXPECT_EQ(c.optim.eps, 1e-8);
    EXPECT_EQ(c.optim.caption_drop_prob, 0.1);
    EXPECT_EQ(c.data.kind, "mds");
    EXPECT_EQ(c.data.mds_dirs.size(), hi_res ? 4u : 5u);  // the official mixes
    EXPECT_EQ(c.data.resolution, hi_res ? 512 : 256);
    EXPECT_EQ(c.optim.ema.enabled, hi_res);
    // The fast path, the same function; no CUDA graph with 8 processes.
    EXPECT_EQ(c.optim.execution, "fast");
    EXPECT_FALSE(c.optim.cuda_graph);
  }
  EXPECT_EQ(s1.optim.warmup_steps, 2500);
  EXPECT_EQ(s1.optim.alpha_f, 0.33);
  EXPECT_EQ(s1.optim.t_max, 250000);
  EXPECT_EQ(s3.optim.warmup_steps, 500);
  EXPECT_EQ(s3.optim.ema.smoothing, 0.99975);
  EXPECT_EQ(s3.optim.ema.start_step, 25000);
  EXPECT_EQ(s4.optim.ema.smoothing, 0.9975);
  EXPECT_EQ(s4.optim.ema.start_step, 1000);
  // Chaining: 2 continues 1, 3 takes 2's weights without pos_embed, 4 continues 3.
  EXPECT_TRUE(s1.optim.continue_from.empty() && s1.optim.init_from.empty());
  EXPECT_NE(s2.optim.continue_from.find(s1.run.dir), std::string::npos);
  EXPECT_NE(s3.optim.init_from.find(s2.run.dir), std::string::npos);
  EXPECT_EQ(s3.optim.init_ignore_keys, std::vector<std::string>{"pos_embed"});
  EXPECT_NE(s4.optim.continue_from.find(s3.run.dir), std::string::npos);
}

// microdit-train's advice when a micro-batch runs out of GPU memory.
TEST(TrainConfig, SmallerMicroBatchAdviceKeepsTheGlobalBatch) {
  TrainConfig c;
  c.optim.batch_size = 2048;
  c.optim.micro_batch_size = 32;
  EXPECT_EQ(smaller_micro_batch_advice(c, 8),
            "--set optim.micro_batch_size=16 (16 accumulation steps per GPU; the global batch "
            "of 2048 and the function stay the same)");
  c.optim.batch_size = 27;  // an odd micro-batch: 4 does not tile 27, 3 does
  c.optim.micro_batch_size = 9;
  EXPECT_EQ(smaller_micro_batch_advice(c, 1),
            "--set optim.micro_batch_size=3 (9 accumulation steps per GPU; the global batch of "
            "27 and the function stay the same)");
  c.optim.micro_batch_size = 0;  // no accumulation: the rank's whole share, 27
  EXPECT_EQ(smaller_micro_batch_advice(c, 1),
            "--set optim.micro_batch_size=9 (3 accumulation steps per GPU; the global batch of "
            "27 and the function stay the same)");
  c.optim.micro_batch_size = 1;
  EXPECT_EQ(smaller_micro_batch_advice(c, 1),
            "optim.micro_batch_size is already 1: more GPUs or a GPU with more memory");
}

// Whether a documented default (YAML text) is the value `actual` of the resolved default config:
// numbers by value (1e-4 is 0.0001), strings by text, lists element by element.
bool same_value(const YAML::Node& documented, const YAML::Node& actual) {
  if (documented.IsSequence() || actual.IsSequence()) {
    if (!documented.IsSequence() || !actual.IsSequence() || documented.size() != actual.size()) {
      return false;
    }
    for (std::size_t i = 0; i < documented.size(); ++i) {
      if (!same_value(documented[i], actual[i])) return false;
    }
    return true;
  }
  if (documented.IsNull() || actual.IsNull()) return documented.IsNull() && actual.IsNull();
  const std::string a = documented.Scalar(), b = actual.Scalar();
  double x = 0, y = 0;
  if (YAML::convert<double>::decode(documented, x) && YAML::convert<double>::decode(actual, y)) {
    return x == y || (std::isinf(x) && x == y);
  }
  return a == b;
}

// Every key of docs/config.md's tables is a key of the schema and the other way round, and each
// documented default (where the table gives one as a value) is the real default.
TEST(TrainConfig, DocumentedKeysAreTheSchemaWithTheirDefaults) {
  std::ifstream doc(test::source_dir() / "docs" / "config.md");
  ASSERT_TRUE(doc) << "docs/config.md";
  const std::regex heading(R"(^#{2,3} `([a-z_.]+)`)");
  const std::regex row(R"(^\| `([A-Za-z0-9_]+)` \| [^|]+ \| ([^|]+) \|)");
  const YAML::Node defaults = YAML::Load(to_yaml(TrainConfig{}));
  const auto keys = config_keys();
  std::set<std::string> documented;
  std::string section;
  for (std::string line; std::getline(doc, line);) {
    std::smatch m;
    if (line.starts_with("#")) {
      section = std::regex_search(line, m, heading) ? m[1].str() : "";
      continue;
    }
    if (section.empty() || !std::regex_search(line, m, row)) continue;
    const std::string key = section + "." + m[1].str();
    EXPECT_TRUE(std::find(keys.begin(), keys.end(), key) != keys.end())
        << key << " is documented but not a config key";
    EXPECT_TRUE(documented.insert(key).second) << key << " is documented twice";
    std::string cell = m[2].str();
    cell = cell.substr(0, cell.find_last_not_of(' ') + 1);
    YAML::Node actual = defaults;
    std::stringstream parts(key);
    for (std::string part; std::getline(parts, part, '.');) actual.reset(actual[part]);
    if (cell == "empty") {
      EXPECT_TRUE(actual.IsNull() || (actual.IsScalar() && actual.Scalar().empty()) ||
                  (actual.IsSequence() && actual.size() == 0))
          << key << " is documented as empty";
    } else if (cell.size() > 2 && cell.front() == '`' && cell.back() == '`') {
      EXPECT_TRUE(same_value(YAML::Load(cell.substr(1, cell.size() - 2)), actual))
          << key << ": documented default " << cell << ", the default config has "
          << YAML::Dump(actual);
    } else {
      ADD_FAILURE() << key << ": default cell '" << cell << "' is neither a value nor 'empty'";
    }
  }
  for (const auto& key : keys) EXPECT_TRUE(documented.count(key)) << key << " is not documented";
}

}  // namespace
}  // namespace microdit::train
