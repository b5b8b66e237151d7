#include "microdit/parity/reference_check.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/diffusion/edm_loss.h"
#include "microdit/diffusion/edm_sampler.h"
#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/io/torch_checkpoint.h"
#include "microdit/model/microdit.h"
#include "microdit/model/pos_embed.h"
#include "microdit/nn/autocast.h"

namespace microdit::parity {
namespace {
constexpr double kOutputBound = 1e-5;
constexpr double kGradBound = 1e-4;
constexpr double kSamplerBound = 1e-4;
constexpr double kPosEmbedBound = 1e-6;

diffusion::EDMConfig edm_from_json(const io::Json& j) {
  diffusion::EDMConfig e;
  auto number = [&](const char* key, double fallback) {
    const io::Json* v = io::json_find(j, key);
    if (!v) return fallback;
    if (*v == "inf") return std::numeric_limits<double>::infinity();
    return io::json_to_double(*v);
  };
  e.sigma_min = number("sigma_min", e.sigma_min);
  e.sigma_max = number("sigma_max", e.sigma_max);
  e.P_mean = number("P_mean", e.P_mean);
  e.P_std = number("P_std", e.P_std);
  e.sigma_data = number("sigma_data", e.sigma_data);
  e.rho = number("rho", e.rho);
  e.S_churn = number("S_churn", e.S_churn);
  e.S_min = number("S_min", e.S_min);
  e.S_max = number("S_max", e.S_max);
  e.S_noise = number("S_noise", e.S_noise);
  return e;
}

const at::Tensor& case_tensor(const ReferenceSet& ref, const std::string& key) {
  auto it = ref.cases.find(key);
  if (it == ref.cases.end()) {
    throw std::runtime_error(
        fmt::format("{}: cases.safetensors has no tensor '{}'", ref.dir.string(), key));
  }
  return it->second;
}

// Runs the checks of one reference set on one device; `dev(t)` moves inputs there.
class Checker {
 public:
  Checker(const ReferenceSet& ref, const CheckOptions& options)
      : ref_(ref), options_(options), dit_(ref.config) {
    load_weights();
    dit_->to(options.device);
    dit_->train();
    nn::apply_execution(*dit_, {options.execution, /*low_precision_norm=*/true});
  }

  std::vector<CaseResult> run() {
    check_pos_embed();
    check_forward_and_gradients();
    check_masked();
    check_cfg();
    check_losses();
    check_sampler();
    return results_;
  }

 private:
  void load_weights() {
    const auto path = ref_.dir / options_.weights_file;
    io::TensorMap weights =
        path.extension() == ".pt" ? io::load_torch_state_dict(path) : io::load_safetensors(path);
    io::load_state_dict(*dit_, weights);
  }

  at::Tensor dev(const std::string& key) { return case_tensor(ref_, key).to(options_.device); }

  void add(const std::string& name, const at::Tensor& ours, const at::Tensor& ref, double bound) {
    results_.push_back({name, relative_error(ours, ref), bound});
  }

  std::optional<nn::AutocastGuard> autocast() {
    if (!options_.bf16_autocast) return std::nullopt;
    return std::make_optional<nn::AutocastGuard>(options_.device.type(), at::kBFloat16);
  }

  void check_pos_embed() {
    const auto& c = ref_.config;
    auto ours = model::sincos_pos_embed_2d(c.dim, c.grid_size(), c.pos_interp_scale, c.grid_size());
    add("pos_embed", ours, dit_->pos_embed.cpu(), kPosEmbedBound);
  }

  void check_forward_and_gradients() {
    dit_->zero_grad();
    at::Tensor out;
    {
      auto guard = autocast();
      out = dit_->forward(dev("x"), dev("t"), dev("y")).to(at::kFloat);
    }
    add("out_nomask", out, dev("out_nomask"), kOutputBound);
    (out * dev("grad_probe")).sum().backward();
    for (const auto& p : dit_->named_parameters()) {
      const auto key = "grad." + p.key();
      if (ref_.cases.count(key) == 0) continue;
      add(key, p.value().grad(), dev(key), kGradBound);
    }
    dit_->zero_grad();
  }

  model::TokenMask reference_mask() { return {dev("ids_keep"), dev("ids_restore"), dev("mask")}; }

  void check_masked() {
    // Our mask sampling from the same uniform noise must give the same indices.
    auto sampled = model::mask_from_noise(case_tensor(ref_, "mask_noise"), ref_.mask_ratio);
    add("mask_from_noise.ids_keep", sampled.ids_keep.to(at::kDouble),
        case_tensor(ref_, "ids_keep").to(at::kDouble), 0.0);
    add("mask_from_noise.mask", sampled.mask, case_tensor(ref_, "mask"), 0.0);
    at::NoGradGuard no_grad;
    auto mask = reference_mask();
    auto guard = autocast();
    auto out = dit_->forward(dev("x"), dev("t"), dev("y"), &mask).to(at::kFloat);
    add("out_masked", out, dev("out_masked"), kOutputBound);
  }

  void check_cfg() {
    at::NoGradGuard no_grad;
    auto guard = autocast();
    auto out = dit_->forward_with_cfg(dev("x"), dev("t"), dev("y"), ref_.cfg_scale).to(at::kFloat);
    add("out_cfg", out, dev("out_cfg"), kOutputBound);
  }

  void check_losses() {
    at::NoGradGuard no_grad;
    diffusion::EDMLossNoise draws{dev("edm_rnd_normal"), dev("edm_noise")};
    auto mask = reference_mask();
    auto x = dev("x"), y = dev("y");
    auto guard = autocast();
    add("edm_loss_nomask", diffusion::edm_loss(dit_, x, y, draws, ref_.edm),
        dev("edm_loss_nomask").reshape({}), kOutputBound);
    add("edm_loss_masked", diffusion::edm_loss(dit_, x, y, draws, ref_.edm, &mask),
        dev("edm_loss_masked").reshape({}), kOutputBound);
  }

  void check_sampler() {
    for (const auto& [key, cfg] : {std::pair<std::string, double>{"sample_steps4_cfg1", 1.0},
                                   {"sample_steps4_cfg", ref_.cfg_scale}}) {
      diffusion::SamplerOptions options;
      options.num_steps = ref_.sampler_steps;
      options.cfg = cfg;
      auto guard = autocast();
      auto out = diffusion::edm_sample(dit_, dev("sampler_init"), dev("y"), options, ref_.edm);
      add(key, out, dev(key), kSamplerBound);
    }
  }

  const ReferenceSet& ref_;
  CheckOptions options_;
  model::DiT dit_;
  std::vector<CaseResult> results_;
};
}  // namespace

double relative_error(const at::Tensor& ours, const at::Tensor& ref) {
  auto a = ours.detach().to(at::kCPU, at::kDouble);
  auto b = ref.detach().to(at::kCPU, at::kDouble);
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  const double denom = b.norm().item<double>();
  const double diff = (a - b).norm().item<double>();
  if (denom == 0.0) return diff;
  return diff / denom;
}

ReferenceSet load_reference_set(const std::filesystem::path& dir) {
  ReferenceSet ref;
  ref.dir = dir;
  const io::Json config = io::read_json_file(dir / "config.json");
  ref.config = model::config_from_json(io::json_at(config, "dit_kwargs"));
  if (const io::Json* edm = io::json_find(config, "edm")) ref.edm = edm_from_json(*edm);
  ref.mask_ratio = io::json_to_double(io::json_at(config, "mask_ratio"));
  ref.cfg_scale = io::json_to_double(io::json_at(config, "cfg_scale"));
  ref.sampler_steps = io::json_to_int64(io::json_at(config, "sampler_steps"));
  ref.cases = io::load_safetensors(dir / "cases.safetensors");
  return ref;
}

std::vector<CaseResult> check_reference(const ReferenceSet& ref, const CheckOptions& options) {
  return Checker(ref, options).run();
}

}  // namespace microdit::parity
