#include "microdit/train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "microdit/io/read_file.h"
#include "microdit/model/token_route.h"
#include "microdit/nn/sdp_backend.h"
#include "microdit/util/error_message.h"

namespace microdit::train {
namespace {

// ---------------------------------------------------------------------------------------------
// Scalars: YAML text <-> values. Numbers are parsed with std::from_chars and written with the
// shortest representation that reads back to the same double, so to_yaml round-trips exactly.

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// How a YAML node is shown in an error message.
std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "an empty value";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "'" + node.Scalar() + "'";
}

[[noreturn]] void throw_type_error(const std::string& path, const std::string& source,
                                   const std::string& expected, const YAML::Node& node) {
  throw std::invalid_argument("key '" + path + "' in " + source + " expects " + expected +
                              ", got " + describe(node));
}

std::string_view strip_plus(std::string_view text) {
  if (text.size() > 1 && text.front() == '+') text.remove_prefix(1);
  return text;
}

template <class Int>
bool parse_integer(std::string_view text, Int& out) {
  text = strip_plus(text);
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

bool parse_double(std::string_view text, double& out) {
  text = strip_plus(text);
  const bool negative = !text.empty() && text.front() == '-';
  const std::string_view body = negative ? text.substr(1) : text;
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    out = negative ? -std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::infinity();
    return true;
  }
  if (!negative && (body == ".nan" || body == ".NaN" || body == ".NAN")) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

std::string format_double(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, end);
  // Keep a '.' so every YAML reader (PyYAML too) sees a float: "3" -> "3.0", "1e-08" -> "1.0e-08".
  if (text.find_first_of(".e") == std::string::npos) {
    text += ".0";
  } else if (text.find('.') == std::string::npos) {
    text.insert(text.find('e'), ".0");
  }
  return text;
}

std::string quote(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "\"";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// read_value: one YAML node into one member; write_value: the member as YAML flow text.
void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                int64_t& out) {
  if (!node.IsScalar() || !parse_integer(node.Scalar(), out))
    throw_type_error(path, source, "an integer", node);
}

void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                uint64_t& out) {
  if (!node.IsScalar() || !parse_integer(node.Scalar(), out))
    throw_type_error(path, source, "a non-negative integer", node);
}

// Numbers are finite, but for edm.S_max, whose default is infinity (EDM's S_max).
void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                double& out) {
  if (!node.IsScalar() || !parse_double(node.Scalar(), out)) {
    throw_type_error(path, source, "a number", node);
  }
  if (std::isnan(out) || (std::isinf(out) && path != "edm.S_max")) {
    throw_type_error(path, source, "a finite number", node);
  }
}

void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                bool& out) {
  static const std::set<std::string> yes{"true", "True", "TRUE"};
  static const std::set<std::string> no{"false", "False", "FALSE"};
  if (node.IsScalar() && yes.count(node.Scalar())) {
    out = true;
  } else if (node.IsScalar() && no.count(node.Scalar())) {
    out = false;
  } else {
    throw_type_error(path, source, "a boolean (true or false)", node);
  }
}

void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                std::string& out) {
  if (node.IsNull()) {
    out.clear();
  } else if (node.IsScalar()) {
    out = node.Scalar();
  } else {
    throw_type_error(path, source, "a string", node);
  }
}

template <class T>
void read_list(const YAML::Node& node, const std::string& path, const std::string& source,
               const std::string& expected, std::vector<T>& out) {
  if (node.IsNull()) {
    out.clear();
    return;
  }
  if (!node.IsSequence()) throw_type_error(path, source, expected, node);
  std::vector<T> values(node.size());
  for (size_t i = 0; i < node.size(); ++i)
    read_value(node[i], path + "[" + std::to_string(i) + "]", source, values[i]);
  out = std::move(values);
}

void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                std::vector<double>& out) {
  read_list(node, path, source, "a list of numbers such as [0.5, 1.0]", out);
}

void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                std::vector<int64_t>& out) {
  read_list(node, path, source, "a list of integers such as [100, 200]", out);
}

void read_value(const YAML::Node& node, const std::string& path, const std::string& source,
                std::vector<std::string>& out) {
  read_list(node, path, source, "a list of strings", out);
}

std::string write_value(int64_t value) { return std::to_string(value); }
std::string write_value(uint64_t value) { return std::to_string(value); }
std::string write_value(double value) { return format_double(value); }
std::string write_value(bool value) { return value ? "true" : "false"; }
std::string write_value(const std::string& value) { return quote(value); }

template <class T>
std::string write_value(const std::vector<T>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + write_value(values[i]);
  return out + "]";
}

// ---------------------------------------------------------------------------------------------
// The schema: a tree of keys bound to the members of one TrainConfig. Parsing, overrides and
// to_yaml all walk it, so a key exists in all three or in none.

struct Key {
  std::string name;
  std::vector<Key> children;  // a section when non-empty
  std::function<void(const YAML::Node&, const std::string& path, const std::string& source)> read;
  std::function<std::string()> write;

  bool is_section() const { return !children.empty(); }
};

template <class T>
Key leaf(std::string name, T& member) {
  Key key;
  key.name = std::move(name);
  key.read = [&member](const YAML::Node& node, const std::string& path, const std::string& source) {
    read_value(node, path, source, member);
  };
  key.write = [&member] { return write_value(member); };
  return key;
}

Key section(std::string name, std::vector<Key> children) {
  Key key;
  key.name = std::move(name);
  key.children = std::move(children);
  return key;
}

std::vector<Key> schema(TrainConfig& c) {
  RunSection& r = c.run;
  model::ZooArgs& z = c.model.zoo;
  model::DiTConfig& d = c.model.dit;
  diffusion::EDMConfig& e = c.edm;
  OptimSection& o = c.optim;
  EMASection& ema = c.optim.ema;
  DataSection& data = c.data;
  SampleSection& s = c.sample;
  DistSection& dist = c.dist;
  return {
      section("run",
              {leaf("dir", r.dir), leaf("seed", r.seed), leaf("device", r.device),
               leaf("log_every", r.log_every), leaf("checkpoint_every", r.checkpoint_every),
               leaf("keep_checkpoints", r.keep_checkpoints), leaf("sample_every", r.sample_every),
               leaf("eval_every", r.eval_every), leaf("eval_steps", r.eval_steps)}),
      section("model",
              {leaf("arch", c.model.arch),
               section("zoo", {leaf("caption_channels", z.caption_channels),
                               leaf("qkv_ratio", z.qkv_ratio), leaf("mlp_ratio", z.mlp_ratio),
                               leaf("pos_interp_scale", z.pos_interp_scale),
                               leaf("input_size", z.input_size), leaf("num_experts", z.num_experts),
                               leaf("expert_capacity", z.expert_capacity),
                               leaf("experts_every_n", z.experts_every_n),
                               leaf("in_channels", z.in_channels)}),
               section("dit", {leaf("input_size", d.input_size),
                               leaf("patch_size", d.patch_size),
                               leaf("in_channels", d.in_channels),
                               leaf("dim", d.dim),
                               leaf("depth", d.depth),
                               leaf("head_dim", d.head_dim),
                               leaf("multiple_of", d.multiple_of),
                               leaf("caption_channels", d.caption_channels),
                               leaf("pos_interp_scale", d.pos_interp_scale),
                               leaf("norm_eps", d.norm_eps),
                               leaf("depth_init", d.depth_init),
                               leaf("qkv_multipliers", d.qkv_multipliers),
                               leaf("ffn_multipliers", d.ffn_multipliers),
                               leaf("use_patch_mixer", d.use_patch_mixer),
                               leaf("patch_mixer_depth", d.patch_mixer_depth),
                               leaf("patch_mixer_dim", d.patch_mixer_dim),
                               leaf("patch_mixer_qkv_ratio", d.patch_mixer_qkv_ratio),
                               leaf("patch_mixer_mlp_ratio", d.patch_mixer_mlp_ratio),
                               leaf("use_bias", d.use_bias),
                               leaf("num_experts", d.num_experts),
                               leaf("expert_capacity", d.expert_capacity),
                               leaf("experts_every_n", d.experts_every_n)})}),
      section("edm",
              {leaf("sigma_min", e.sigma_min), leaf("sigma_max", e.sigma_max),
               leaf("P_mean", e.P_mean), leaf("P_std", e.P_std), leaf("sigma_data", e.sigma_data),
               leaf("num_steps", e.num_steps), leaf("rho", e.rho), leaf("S_churn", e.S_churn),
               leaf("S_min", e.S_min), leaf("S_max", e.S_max), leaf("S_noise", e.S_noise)}),
      section("optim",
              {leaf("steps", o.steps),
               leaf("batch_size", o.batch_size),
               leaf("micro_batch_size", o.micro_batch_size),
               leaf("lr", o.lr),
               leaf("weight_decay", o.weight_decay),
               leaf("beta1", o.beta1),
               leaf("beta2", o.beta2),
               leaf("eps", o.eps),
               leaf("moe_lr_scale", o.moe_lr_scale),
               leaf("schedule", o.schedule),
               leaf("warmup_steps", o.warmup_steps),
               leaf("alpha_f", o.alpha_f),
               leaf("t_max", o.t_max),
               leaf("clip_norm", o.clip_norm),
               leaf("mask_ratio", o.mask_ratio),
               section("route", {leaf("ratio", o.route.ratio),
                                 leaf("start_block", o.route.start_block),
                                 leaf("end_block", o.route.end_block)}),
               leaf("caption_drop_prob", o.caption_drop_prob),
               leaf("precision", o.precision),
               leaf("execution", o.execution),
               leaf("attention_backend", o.attention_backend),
               leaf("cuda_graph", o.cuda_graph),
               section("ema", {leaf("enabled", ema.enabled), leaf("smoothing", ema.smoothing),
                               leaf("start_step", ema.start_step)}),
               leaf("continue_from", o.continue_from),
               leaf("init_from", o.init_from),
               leaf("init_ignore_keys", o.init_ignore_keys)}),
      section("data",
              {leaf("kind", data.kind), leaf("path", data.path), leaf("mds_dirs", data.mds_dirs),
               leaf("resolution", data.resolution), leaf("caption_tokens", data.caption_tokens),
               leaf("latents_key", data.latents_key), leaf("captions_key", data.captions_key),
               leaf("builtin_samples", data.builtin_samples),
               leaf("builtin_palette", data.builtin_palette),
               leaf("builtin_image_size", data.builtin_image_size),
               leaf("builtin_caption_len", data.builtin_caption_len),
               leaf("builtin_caption_channels", data.builtin_caption_channels),
               leaf("synthetic_samples", data.synthetic_samples),
               leaf("val_mds_dirs", data.val_mds_dirs), leaf("val_path", data.val_path),
               leaf("val_samples", data.val_samples), leaf("val_sigmas", data.val_sigmas),
               leaf("val_seed", data.val_seed)}),
      section("sample", {leaf("prompts", s.prompts), leaf("prompts_file", s.prompts_file),
                         leaf("steps", s.steps), leaf("cfg", s.cfg), leaf("seed", s.seed),
                         leaf("vae", s.vae), leaf("text_encoder", s.text_encoder),
                         leaf("text_config", s.text_config), leaf("tokenizer", s.tokenizer),
                         leaf("caption_embeddings", s.caption_embeddings)}),
      section("dist", {leaf("timeout_s", dist.timeout_s), leaf("bucket_mb", dist.bucket_mb),
                       leaf("zero_stage", dist.zero_stage)}),
  };
}

size_t levenshtein(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

std::string closest(const std::vector<std::string>& names, const std::string& name) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& candidate : names) {
    const size_t distance = levenshtein(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

const Key* find_key(const std::vector<Key>& keys, const std::string& name) {
  for (const auto& key : keys)
    if (key.name == name) return &key;
  return nullptr;
}

// The per-operation switches that optim.execution replaced: configs that still name one get told
// what to write instead, not a guess at a similar key.
bool replaced_by_execution(const std::string& prefix, const std::string& name) {
  static const std::set<std::string> replaced{
      "fused_norm",         "fused_residual",     "recompute_activations", "moe_row_dispatch",
      "fused_moe_combine",  "fused_moe_dispatch", "fold_residual_grad",    "fp32_weight_grads",
      "split_qk_norm",      "one_pass_norm_grad", "merged_swiglu"};
  return prefix == "optim" && replaced.count(name) > 0;
}

// At most this much of a key or value read from the file is quoted in a message, so that the
// file's name after it stays in the shown line.
constexpr size_t kShownText = 120;

[[noreturn]] void throw_unknown_key(const std::vector<Key>& keys, const std::string& prefix,
                                    const std::string& name, const std::string& source) {
  if (replaced_by_execution(prefix, name)) {
    throw std::invalid_argument("optim." + name +
                                " was replaced by optim.execution (fast: the fused operations; "
                                "reference: the plain ops), in " + source);
  }
  std::vector<std::string> names;
  for (const auto& key : keys) names.push_back(key.name);
  // one_line: a key read from the file may hold a NUL, where what() would end the message, or
  // be long enough to push the file's name out of the shown line.
  throw std::invalid_argument("unknown key '" + util::one_line(join_path(prefix, name), kShownText) +
                              "' in " + source + "; did you mean '" +
                              join_path(prefix, closest(names, name)) + "'?");
}

void read_section(const std::vector<Key>& keys, const YAML::Node& node, const std::string& prefix,
                  const std::string& source) {
  if (node.IsNull()) return;  // "section:" with nothing under it keeps the defaults
  if (!node.IsMap()) {
    throw_type_error(prefix.empty() ? "<top level>" : prefix, source, "a mapping of keys to values",
                     node);
  }
  std::set<std::string> seen;
  for (const auto& item : node) {
    if (!item.first.IsScalar())
      throw std::invalid_argument("a key under " + (prefix.empty() ? "the top level" : prefix) +
                                  " in " + source + " is not a name");
    const std::string name = item.first.Scalar();
    const std::string path = join_path(prefix, name);
    const Key* key = find_key(keys, name);
    if (key == nullptr) throw_unknown_key(keys, prefix, name, source);
    if (!seen.insert(name).second)
      throw std::invalid_argument("key '" + util::one_line(path, kShownText) + "' appears twice in " +
                                  source);
    if (key->is_section()) {
      read_section(key->children, item.second, path, source);
    } else {
      key->read(item.second, path, source);
    }
  }
}

// yaml-cpp keeps an alias as a second reference to its anchor's node, so a few lines of aliases
// of aliases ("a billion laughs") parse into a small graph that a walk over the document visits
// exponentially often. The schema walks it, so it is bounded first: in depth (a config nests
// four levels) and in nodes visited, each alias counted as often as it is reached.
constexpr int kMaxYamlDepth = 64;
constexpr std::uint64_t kMaxConfigBytes = std::uint64_t{16} << 20;
constexpr int64_t kMaxYamlNodes = 100'000;

void check_yaml_size(const YAML::Node& node, const std::string& source, int depth,
                     int64_t& budget) {
  if (depth > kMaxYamlDepth) {
    throw std::invalid_argument(source + ": YAML nests deeper than " +
                                std::to_string(kMaxYamlDepth) + " levels");
  }
  if (--budget < 0) {
    throw std::invalid_argument(source + ": YAML expands to more than " +
                                std::to_string(kMaxYamlNodes) +
                                " values (aliases of aliases?)");
  }
  if (node.IsSequence()) {
    for (const auto& item : node) check_yaml_size(item, source, depth + 1, budget);
  } else if (node.IsMap()) {
    for (const auto& item : node) {
      check_yaml_size(item.first, source, depth + 1, budget);
      check_yaml_size(item.second, source, depth + 1, budget);
    }
  }
}

YAML::Node load_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument("cannot parse " + source + " as YAML: " + e.what());
  }
  int64_t budget = kMaxYamlNodes;
  check_yaml_size(root, source, 0, budget);
  return root;
}

// "a.b.c=value": the value is a YAML scalar or flow collection, e.g. optim.lr=1e-4 or
// model.dit.qkv_multipliers=[0.5,1.0].
void apply_override(const std::vector<Key>& root, const std::string& text) {
  const auto equals = text.find('=');
  if (equals == std::string::npos) {
    throw std::invalid_argument("override '" + text +
                                "' has no '=': expected key=value, e.g. optim.lr=1e-4");
  }
  const std::string dotted = text.substr(0, equals);
  std::vector<std::string> parts;
  std::stringstream stream(dotted);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  if (dotted.empty() || dotted.back() == '.' ||
      std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); })) {
    throw std::invalid_argument("override '" + text +
                                "' has a malformed key: expected dotted names such as optim.lr");
  }
  const std::string source = "override '" + text + "'";
  const YAML::Node value = load_yaml(text.substr(equals + 1), source);

  const std::vector<Key>* keys = &root;
  std::string prefix;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Key* key = find_key(*keys, parts[i]);
    if (key == nullptr) throw_unknown_key(*keys, prefix, parts[i], source);
    const std::string path = join_path(prefix, parts[i]);
    if (i + 1 == parts.size()) {
      if (key->is_section()) {
        read_section(key->children, value, path, source);
      } else {
        key->read(value, path, source);
      }
    } else if (!key->is_section()) {
      throw std::invalid_argument("unknown key '" + dotted + "' in " + source + ": '" + path +
                                  "' is a value, not a section");
    } else {
      keys = &key->children;
      prefix = path;
    }
  }
}

void write_section(const std::vector<Key>& keys, int indent, std::ostringstream& out) {
  for (const auto& key : keys) {
    out << std::string(static_cast<size_t>(indent), ' ') << key.name << ':';
    if (key.is_section()) {
      out << '\n';
      write_section(key.children, indent + 2, out);
    } else {
      out << ' ' << key.write() << '\n';
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Validation: the first value out of range throws, naming its key, the value and what is valid.

std::string show(double value) { return format_double(value); }
std::string show(int64_t value) { return std::to_string(value); }
std::string show(const std::string& value) { return util::one_line(quote(value), kShownText); }
std::string show(bool value) { return value ? "true" : "false"; }

template <class T>
void require(bool ok, const std::string& key, const T& value, const std::string& expected) {
  if (!ok) {
    throw std::invalid_argument("invalid config: " + key + " = " + show(value) + ", expected " +
                                expected);
  }
}

bool is_device(const std::string& device) {
  if (device == "auto" || device == "cpu" || device == "cuda") return true;
  const std::string prefix = "cuda:";
  if (device.rfind(prefix, 0) != 0 || device.size() == prefix.size()) return false;
  return std::all_of(device.begin() + static_cast<std::ptrdiff_t>(prefix.size()), device.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

bool one_of(const std::string& value, const std::vector<std::string>& choices) {
  return std::find(choices.begin(), choices.end(), value) != choices.end();
}

// Upper bounds keep derived sizes (tensor shapes, step counters) far from overflow and a typo
// from asking for terabytes before the first step.
constexpr int64_t kMaxSteps = 1'000'000'000'000;
constexpr int64_t kMaxBatch = int64_t{1} << 20;
constexpr int64_t kMaxSamples = int64_t{1} << 20;
constexpr int64_t kMaxCaptionTokens = 4096;

void validate_run(const RunSection& r) {
  require(!r.dir.empty(), "run.dir", r.dir, "a directory path");
  require(is_device(r.device), "run.device", r.device, "auto, cpu, cuda or cuda:N");
  require(r.log_every > 0, "run.log_every", r.log_every, "> 0");
  require(r.checkpoint_every >= 0, "run.checkpoint_every", r.checkpoint_every,
          ">= 0 (0: only at the end)");
  require(r.keep_checkpoints >= 1, "run.keep_checkpoints", r.keep_checkpoints, ">= 1");
  require(r.sample_every >= 0, "run.sample_every", r.sample_every, ">= 0 (0: only at the end)");
  require(r.eval_every >= 0, "run.eval_every", r.eval_every, ">= 0 (0: no validation loss)");
  for (size_t i = 0; i < r.eval_steps.size(); ++i) {
    require(r.eval_steps[i] >= 1, "run.eval_steps[" + std::to_string(i) + "]", r.eval_steps[i],
            ">= 1");
  }
}

// Where a field of the resolved model comes from: model.dit for "custom", else model.zoo.
std::string model_key(const ModelSection& m, const std::string& field) {
  return (m.arch == "custom" ? "model.dit." : "model.zoo.") + field;
}

model::DiTConfig validate_model(const ModelSection& m) {
  const auto model_error = [](const std::exception& e) {
    return std::invalid_argument(std::string("invalid config: model: ") + util::error_message(e));
  };
  model::DiTConfig dit;
  try {
    dit = m.resolved();
  } catch (const std::exception& e) {
    throw model_error(e);
  }
  // Before DiTConfig::validate, which expands the per-block ratios to `depth` entries.
  require(dit.depth <= 1024, model_key(m, "depth"), dit.depth, "<= 1024");
  try {
    dit.validate();
  } catch (const std::exception& e) {
    throw model_error(e);
  }
  // Fields DiTConfig::validate leaves to its callers.
  const bool custom = m.arch == "custom";
  require(dit.input_size > 0, model_key(m, "input_size"), dit.input_size, "> 0");
  require(dit.in_channels > 0, model_key(m, "in_channels"), dit.in_channels, "> 0");
  require(dit.caption_channels > 0, model_key(m, "caption_channels"), dit.caption_channels, "> 0");
  require(dit.multiple_of > 0, "model.dit.multiple_of", dit.multiple_of, "> 0");
  require(dit.norm_eps > 0, "model.dit.norm_eps", dit.norm_eps, "> 0");
  for (const double r : dit.qkv_multipliers)
    require(r > 0, model_key(m, custom ? "qkv_multipliers" : "qkv_ratio"), r, "ratios > 0");
  for (const double r : dit.ffn_multipliers)
    require(r > 0, model_key(m, custom ? "ffn_multipliers" : "mlp_ratio"), r, "ratios > 0");
  require(dit.patch_mixer_qkv_ratio > 0, "model.dit.patch_mixer_qkv_ratio",
          dit.patch_mixer_qkv_ratio, "> 0");
  require(dit.patch_mixer_mlp_ratio > 0, "model.dit.patch_mixer_mlp_ratio",
          dit.patch_mixer_mlp_ratio, "> 0");
  // Upper bounds far above any trainable model, so that derived sizes (parameter counts, widths
  // times ratios) cannot overflow int64 before anything is built.
  constexpr double kMaxRatio = 64;
  for (const double r : dit.qkv_multipliers) {
    require(r <= kMaxRatio, model_key(m, custom ? "qkv_multipliers" : "qkv_ratio"), r, "<= 64");
  }
  for (const double r : dit.ffn_multipliers) {
    require(r <= kMaxRatio, model_key(m, custom ? "ffn_multipliers" : "mlp_ratio"), r, "<= 64");
  }
  require(dit.patch_mixer_qkv_ratio <= kMaxRatio, "model.dit.patch_mixer_qkv_ratio",
          dit.patch_mixer_qkv_ratio, "<= 64");
  require(dit.patch_mixer_mlp_ratio <= kMaxRatio, "model.dit.patch_mixer_mlp_ratio",
          dit.patch_mixer_mlp_ratio, "<= 64");
  require(dit.dim <= 65536, model_key(m, "dim"), dit.dim, "<= 65536");
  require(dit.patch_mixer_depth <= 1024, "model.dit.patch_mixer_depth", dit.patch_mixer_depth,
          "<= 1024");
  require(dit.patch_mixer_dim <= 65536, "model.dit.patch_mixer_dim", dit.patch_mixer_dim,
          "<= 65536");
  require(dit.input_size <= 16384, model_key(m, "input_size"), dit.input_size, "<= 16384");
  require(dit.in_channels <= 4096, model_key(m, "in_channels"), dit.in_channels, "<= 4096");
  require(dit.caption_channels <= 65536, model_key(m, "caption_channels"), dit.caption_channels,
          "<= 65536");
  require(dit.num_experts <= 4096, "model.dit.num_experts", dit.num_experts, "<= 4096");
  // Each expert chooses int(capacity x tokens / experts) of the tokens: at most all of them.
  require(dit.expert_capacity <= static_cast<double>(dit.num_experts),
          model_key(m, "expert_capacity"), dit.expert_capacity,
          "<= num_experts (" + std::to_string(dit.num_experts) + ")");
  require(dit.multiple_of <= 65536, "model.dit.multiple_of", dit.multiple_of, "<= 65536");
  return dit;
}

void validate_edm(const diffusion::EDMConfig& e) {
  require(e.sigma_min > 0, "edm.sigma_min", e.sigma_min, "> 0");
  require(e.sigma_max > e.sigma_min && std::isfinite(e.sigma_max), "edm.sigma_max", e.sigma_max,
          "a finite value > edm.sigma_min");
  require(std::isfinite(e.P_mean), "edm.P_mean", e.P_mean, "a finite number");
  require(e.P_std > 0 && std::isfinite(e.P_std), "edm.P_std", e.P_std, "a finite value > 0");
  require(e.sigma_data > 0 && std::isfinite(e.sigma_data), "edm.sigma_data", e.sigma_data,
          "a finite value > 0");
  require(e.num_steps >= 1 && e.num_steps <= 100000, "edm.num_steps", e.num_steps,
          "in [1, 100000]");
  require(e.rho > 0, "edm.rho", e.rho, "> 0");
  require(e.S_churn >= 0, "edm.S_churn", e.S_churn, ">= 0");
  require(e.S_min >= 0, "edm.S_min", e.S_min, ">= 0");
  require(e.S_max >= e.S_min, "edm.S_max", e.S_max, ">= edm.S_min (.inf allowed)");
  require(e.S_noise > 0, "edm.S_noise", e.S_noise, "> 0");
}

void validate_route(const OptimSection& o, const model::DiTConfig& dit) {
  const auto& r = o.route;
  require(r.ratio >= 0 && r.ratio < 1, "optim.route.ratio", r.ratio, "a value in [0, 1) (0: off)");
  if (r.ratio == 0) return;
  require(o.mask_ratio == 0, "optim.route.ratio", r.ratio,
          "0 when optim.mask_ratio is set (a run masks tokens or routes them, not both)");
  require(model::routed_tokens(dit.num_patches(), r.ratio) >= 1, "optim.route.ratio", r.ratio,
          "a ratio that leaves at least one of the model's " +
              std::to_string(dit.num_patches()) + " patches in the stream");
  require(r.start_block >= 0 && r.start_block < dit.depth, "optim.route.start_block",
          r.start_block, "a backbone block in [0, " + std::to_string(dit.depth - 1) + "]");
  require(r.end_block >= r.start_block && r.end_block < dit.depth, "optim.route.end_block",
          r.end_block,
          "a backbone block in [optim.route.start_block = " + std::to_string(r.start_block) +
              ", " + std::to_string(dit.depth - 1) + "]");
}

void validate_optim(const OptimSection& o, int64_t world_size, const model::DiTConfig& dit) {
  require(o.steps > 0 && o.steps <= kMaxSteps, "optim.steps", o.steps, "in [1, 10^12]");
  require(o.batch_size > 0 && o.batch_size <= kMaxBatch, "optim.batch_size", o.batch_size,
          "in [1, 2^20]");
  require(o.micro_batch_size >= 0 && o.micro_batch_size <= kMaxBatch, "optim.micro_batch_size",
          o.micro_batch_size, "in [0, 2^20] (0: batch_size / world size)");
  if (o.micro_batch_size == 0) {
    require(o.batch_size % world_size == 0, "optim.batch_size", o.batch_size,
            "a multiple of the world size " + std::to_string(world_size) +
                " (optim.micro_batch_size is 0, i.e. batch_size / world size)");
  } else {
    const int64_t per_step = world_size * o.micro_batch_size;
    require(o.batch_size % per_step == 0, "optim.batch_size", o.batch_size,
            "a multiple of world size " + std::to_string(world_size) +
                " x optim.micro_batch_size " + std::to_string(o.micro_batch_size) + " = " +
                std::to_string(per_step));
  }
  require(o.lr >= 0 && std::isfinite(o.lr), "optim.lr", o.lr, "a finite value >= 0");
  require(o.weight_decay >= 0 && std::isfinite(o.weight_decay), "optim.weight_decay",
          o.weight_decay, "a finite value >= 0");
  require(o.beta1 >= 0 && o.beta1 < 1, "optim.beta1", o.beta1, "a value in [0, 1)");
  require(o.beta2 >= 0 && o.beta2 < 1, "optim.beta2", o.beta2, "a value in [0, 1)");
  require(o.eps > 0, "optim.eps", o.eps, "> 0");
  require(o.moe_lr_scale >= 0 && std::isfinite(o.moe_lr_scale), "optim.moe_lr_scale",
          o.moe_lr_scale, "a finite value >= 0");
  require(one_of(o.schedule, {"constant", "constant_with_warmup", "cosine_with_warmup"}),
          "optim.schedule", o.schedule, "constant, constant_with_warmup or cosine_with_warmup");
  require(o.warmup_steps >= 0 && o.warmup_steps <= o.steps, "optim.warmup_steps", o.warmup_steps,
          "a value in [0, optim.steps = " + std::to_string(o.steps) + "]");
  require(o.alpha_f >= 0 && o.alpha_f <= 1, "optim.alpha_f", o.alpha_f, "a value in [0, 1]");
  require(o.t_max >= 0, "optim.t_max", o.t_max, ">= 0 (0: optim.steps)");
  if (o.schedule == "cosine_with_warmup") {
    const int64_t t_max = o.t_max == 0 ? o.steps : o.t_max;
    require(t_max > o.warmup_steps, "optim.t_max", o.t_max,
            "a decay end after optim.warmup_steps = " + std::to_string(o.warmup_steps) +
                " (0 means optim.steps)");
  }
  require(o.clip_norm >= 0, "optim.clip_norm", o.clip_norm, ">= 0 (0: off)");
  require(o.mask_ratio >= 0 && o.mask_ratio < 1, "optim.mask_ratio", o.mask_ratio,
          "a value in [0, 1)");
  // Official len_keep = int(T * (1 - ratio)) must leave the backbone at least one token.
  const auto kept =
      static_cast<int64_t>(static_cast<double>(dit.num_patches()) * (1.0 - o.mask_ratio));
  require(kept >= 1, "optim.mask_ratio", o.mask_ratio,
          "a ratio that keeps at least one of the model's " + std::to_string(dit.num_patches()) +
              " patches");
  validate_route(o, dit);
  require(o.caption_drop_prob >= 0 && o.caption_drop_prob <= 1, "optim.caption_drop_prob",
          o.caption_drop_prob, "a probability in [0, 1]");
  require(one_of(o.precision, {"auto", "bf16", "bf16-fp32norm", "fp32"}), "optim.precision",
          o.precision, "auto, bf16, bf16-fp32norm or fp32");
  require(one_of(o.attention_backend, nn::sdp_backend_names()), "optim.attention_backend",
          o.attention_backend, "auto, cudnn, flash, efficient or math");
  require(one_of(o.execution, {"auto", "reference", "fast"}), "optim.execution", o.execution,
          "auto, reference or fast");
  require(o.ema.smoothing >= 0 && o.ema.smoothing <= 1, "optim.ema.smoothing", o.ema.smoothing,
          "a value in [0, 1]");
  require(o.ema.start_step >= 0, "optim.ema.start_step", o.ema.start_step, ">= 0");
  require(o.continue_from.empty() || o.init_from.empty(), "optim.init_from", o.init_from,
          "empty when optim.continue_from is set (continue a run, or initialise weights from "
          "one, not both)");
}

void validate_data(const DataSection& d, const ModelSection& model, const model::DiTConfig& dit) {
  require(one_of(d.kind, {"builtin", "safetensors", "mds", "synthetic"}), "data.kind", d.kind,
          "builtin, safetensors, mds or synthetic");
  if (d.kind == "mds") {
    require(!d.mds_dirs.empty(), "data.mds_dirs", std::string("[]"),
            "at least one MDS directory when data.kind is mds");
    require(d.resolution > 0 && d.resolution % 8 == 0 && d.resolution <= 65536, "data.resolution",
            d.resolution, "an image size divisible by 8 (the VAE's downsampling), <= 65536");
    require(d.caption_tokens > 0 && d.caption_tokens <= kMaxCaptionTokens, "data.caption_tokens",
            d.caption_tokens, "in [1, 4096]");
  } else if (d.kind == "synthetic") {
    require(d.synthetic_samples > 0 && d.synthetic_samples <= kMaxSamples, "data.synthetic_samples",
            d.synthetic_samples, "in [1, 2^20]");
    require(d.caption_tokens > 0 && d.caption_tokens <= kMaxCaptionTokens, "data.caption_tokens",
            d.caption_tokens, "in [1, 4096]");
  } else if (d.kind == "safetensors") {
    require(!d.path.empty(), "data.path", d.path,
            "a directory of shards when data.kind is safetensors");
    require(!d.latents_key.empty(), "data.latents_key", d.latents_key, "a tensor name");
    require(!d.captions_key.empty(), "data.captions_key", d.captions_key, "a tensor name");
  } else {
    require(d.builtin_samples > 0 && d.builtin_samples <= kMaxSamples, "data.builtin_samples",
            d.builtin_samples, "in [1, 2^20]");
    require(d.builtin_palette >= 2 && d.builtin_palette <= 8, "data.builtin_palette",
            d.builtin_palette, "a number of colours in [2, 8]");
    require(d.builtin_caption_len >= 7 && d.builtin_caption_len <= kMaxCaptionTokens,
            "data.builtin_caption_len", d.builtin_caption_len,
            "in [7, 4096] (7: the words of a caption)");
    require(dit.in_channels == 3, model_key(model, "in_channels"), dit.in_channels,
            "3 for data.kind builtin (RGB pixels are the latents)");
    require(d.builtin_image_size == dit.input_size, "data.builtin_image_size", d.builtin_image_size,
            "the model's input_size " + std::to_string(dit.input_size) +
                " (the built-in images are the model's input)");
    require(d.builtin_caption_channels == dit.caption_channels, "data.builtin_caption_channels",
            d.builtin_caption_channels,
            "the model's caption_channels " + std::to_string(dit.caption_channels));
  }
}

// The held-out set is read only when run.eval_every or run.eval_steps asks for a validation loss.
void validate_validation(const DataSection& d, bool evaluated) {
  require(d.val_samples > 0 && d.val_samples <= kMaxSamples, "data.val_samples", d.val_samples,
          "in [1, 2^20]");
  require(d.val_seed >= -1, "data.val_seed", d.val_seed, ">= 0, or -1 for run.seed");
  for (const double sigma : d.val_sigmas) {
    require(sigma > 0 && std::isfinite(sigma), "data.val_sigmas", sigma, "noise levels > 0");
  }
  if (!evaluated) return;
  if (d.kind == "mds") {
    require(!d.val_mds_dirs.empty(), "data.val_mds_dirs", std::string("[]"),
            "at least one MDS directory of held-out samples for the validation loss");
  } else if (d.kind == "safetensors") {
    require(!d.val_path.empty(), "data.val_path", d.val_path,
            "a directory of held-out shards for the validation loss");
  }
}

void validate_sample(const SampleSection& s, const DataSection& d) {
  require(s.steps >= 1 && s.steps <= 100000, "sample.steps", s.steps, "in [1, 100000]");
  require(s.cfg >= 1 && std::isfinite(s.cfg), "sample.cfg", s.cfg,
          "a finite guidance scale >= 1 (1: no guidance)");
  require(s.prompts.empty() || s.prompts_file.empty(), "sample.prompts_file", s.prompts_file,
          "empty when sample.prompts lists prompts (one or the other)");
  const std::vector<std::pair<std::string, std::string>> tool_keys = {
      {"sample.vae", s.vae},
      {"sample.text_encoder", s.text_encoder},
      {"sample.text_config", s.text_config},
      {"sample.tokenizer", s.tokenizer},
      {"sample.caption_embeddings", s.caption_embeddings}};
  const bool tools = std::any_of(tool_keys.begin(), tool_keys.end(),
                                 [](const auto& key) { return !key.second.empty(); });
  if (d.kind == "builtin") {
    for (const auto& [key, value] : tool_keys) {
      require(value.empty(), key, value,
              "empty with data.kind builtin (its pixels are the latents, its captions embedded by "
              "the built-in embedder)");
    }
    return;
  }
  if (!tools) return;  // no sample grids on latent data (the trainer says so at start-up)
  require(!s.vae.empty(), "sample.vae", s.vae, "the VAE folder that decodes the samples");
  require(s.text_encoder.empty() != s.caption_embeddings.empty(), "sample.caption_embeddings",
          s.caption_embeddings,
          "set when sample.text_encoder is empty and empty when it is set (one source of the "
          "prompts' caption embeddings)");
  if (!s.text_encoder.empty()) {
    require(!s.tokenizer.empty(), "sample.tokenizer", s.tokenizer,
            "the text tower's tokenizer (bpe_simple_vocab_16e6.txt.gz or a Hugging Face folder)");
  }
  if (s.caption_embeddings.empty()) {
    require(!s.prompts.empty() || !s.prompts_file.empty(), "sample.prompts", std::string("[]"),
            "prompts (or sample.prompts_file) for the text tower to embed");
  }
}

void validate_dist(const DistSection& d) {
  require(d.timeout_s > 0 && std::isfinite(d.timeout_s), "dist.timeout_s", d.timeout_s,
          "a positive number of seconds");
  require(d.bucket_mb > 0 && std::isfinite(d.bucket_mb), "dist.bucket_mb", d.bucket_mb,
          "a positive size in MB");
  require(d.zero_stage == 0 || d.zero_stage == 2, "dist.zero_stage", d.zero_stage,
          "0 (replicated optimizer state) or 2 (sharded gradients and optimizer state)");
}

}  // namespace

model::DiTConfig ModelSection::resolved() const {
  if (arch == "custom") return dit;
  const auto names = model::zoo_names();
  if (!one_of(arch, names)) {
    std::string valid = "custom";
    for (const auto& name : names) valid += ", " + name;
    std::vector<std::string> all = names;
    all.push_back("custom");
    throw std::invalid_argument("unknown model.arch '" + arch + "': valid are " + valid +
                                "; did you mean '" + closest(all, arch) + "'?");
  }
  return model::zoo_config(arch, zoo);
}

TrainConfig parse_train_config(const std::string& yaml_text,
                               const std::vector<std::string>& overrides,
                               const std::string& source) {
  TrainConfig config;
  const std::vector<Key> keys = schema(config);
  read_section(keys, load_yaml(yaml_text, source), "", source);
  for (const auto& text : overrides) apply_override(keys, text);
  try {
    validate(config);
  } catch (const std::invalid_argument& e) {
    // Cut so that the file's name stays in the shown line whatever text the problem quotes.
    throw std::invalid_argument(util::one_line(e.what(), util::kMaxMessageBytes - 150) + " (in " +
                                source + (overrides.empty() ? "" : " with overrides") + ")");
  }
  return config;
}

TrainConfig load_train_config(const std::filesystem::path& path,
                              const std::vector<std::string>& overrides) {
  std::string text;
  try {
    text = io::read_file(path, kMaxConfigBytes, "a config file");
  } catch (const std::runtime_error& e) {  // a bad path is a bad argument (exit 2)
    throw std::invalid_argument("cannot read config file " + std::string(e.what()));
  }
  return parse_train_config(text, overrides, path.string());
}

void validate(const TrainConfig& config, int64_t world_size) {
  if (world_size < 1)
    throw std::invalid_argument("world size " + std::to_string(world_size) + " must be >= 1");
  validate_run(config.run);
  const model::DiTConfig dit = validate_model(config.model);
  validate_edm(config.edm);
  validate_optim(config.optim, world_size, dit);
  validate_data(config.data, config.model, dit);
  validate_validation(config.data, config.run.eval_every > 0 || !config.run.eval_steps.empty());
  validate_sample(config.sample, config.data);
  validate_dist(config.dist);
  require(!config.optim.cuda_graph || world_size == 1 || config.dist.zero_stage == 0,
          "optim.cuda_graph", config.optim.cuda_graph,
          "false with dist.zero_stage 2 in a world of " + std::to_string(world_size) +
              " (the bucketed all-reduce is captured with the step, ZeRO-2's sharded step is not)");
}

int64_t micro_batch_size(const OptimSection& optim, int64_t world_size) {
  return optim.micro_batch_size > 0 ? optim.micro_batch_size : optim.batch_size / world_size;
}

std::string smaller_micro_batch_advice(const TrainConfig& config, int64_t world_size) {
  const int64_t per_rank = config.optim.batch_size / world_size;
  for (int64_t m = micro_batch_size(config.optim, world_size) / 2; m >= 1; --m) {
    if (per_rank % m != 0) continue;
    return "--set optim.micro_batch_size=" + std::to_string(m) + " (" +
           std::to_string(per_rank / m) + " accumulation steps per GPU; the global batch of " +
           std::to_string(config.optim.batch_size) + " and the function stay the same)";
  }
  return "optim.micro_batch_size is already 1: more GPUs or a GPU with more memory";
}

std::vector<std::string> config_keys() {
  TrainConfig config;
  std::vector<std::string> keys;
  std::function<void(const std::vector<Key>&, const std::string&)> walk =
      [&](const std::vector<Key>& level, const std::string& prefix) {
        for (const auto& key : level) {
          const std::string path = join_path(prefix, key.name);
          if (key.is_section()) {
            walk(key.children, path);
          } else {
            keys.push_back(path);
          }
        }
      };
  walk(schema(config), "");
  return keys;
}

std::string to_yaml(const TrainConfig& config) {
  TrainConfig copy = config;  // the schema binds mutable members
  std::ostringstream out;
  out << "# MicroDiT training config, fully resolved: every key (docs/config.md).\n";
  write_section(schema(copy), 0, out);
  return out.str();
}

}  // namespace microdit::train
