// The validation loss (run.eval_every): the EDM loss of held-out samples at fixed noise levels,
// as the official pipeline evaluates on COCO-2014 val. Unlike a training step: no masking, no
// caption drop, sigma taken from a fixed list, and the noise of held-out sample i at sigma drawn
// by its own generator seeded from (seed, i, sigma), so the loss of a checkpoint does not depend
// on the number of processes or how the samples are batched. Rank r evaluates samples i = r,
// r + W, ...; the per-sample losses are summed in float64 and all-reduced.
// Legend: B batch, C H W latent shape, S noise levels.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "microdit/data/dataset.h"
#include "microdit/diffusion/edm_precond.h"
#include "microdit/model/microdit.h"
#include "microdit/train/process_group.h"

namespace microdit::train {

// data.val_sigmas' default: the 10, 30, 50, 70 and 90% quantiles of the training noise levels,
// ln(sigma) ~ N(P_mean, P_std^2).
std::vector<double> default_validation_sigmas(const diffusion::EDMConfig& edm);

// The seed of held-out sample `index`'s noise at noise level `sigma` (its bits, so a level keeps
// its noise when others are added to the list).
uint64_t validation_noise_seed(uint64_t seed, int64_t index, double sigma);

struct ValidationOptions {
  uint64_t seed = 0;
  std::vector<double> sigmas;  // S levels
  int64_t samples = 256;       // held-out samples evaluated (at most the set's)
  int64_t first = 0;           // the held-out samples are set indices first, first + 1, ...
  int64_t batch_size = 64;     // samples per process and forward pass
  bool bf16 = false;           // autocast as the training step
  diffusion::EDMConfig edm;
};

struct ValidationResult {
  double loss = 0;                // mean over the noise levels
  std::vector<double> per_sigma;  // (S) mean over the samples
};

class ValidationLoss {
 public:
  ValidationLoss(std::shared_ptr<const data::Dataset> set, ValidationOptions options);

  int64_t samples() const { return samples_; }
  const std::vector<double>& sigmas() const { return options_.sigmas; }

  // Every rank calls it with the same weights; `group` is null in a world of one.
  ValidationResult evaluate(model::DiT& dit, at::Device device, ProcessGroup* group, int64_t rank,
                            int64_t world_size) const;

 private:
  std::shared_ptr<const data::Dataset> set_;
  ValidationOptions options_;
  int64_t samples_;
};

}  // namespace microdit::train
