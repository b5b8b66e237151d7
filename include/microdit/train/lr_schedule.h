// Learning-rate schedules of the official recipe (Composer's schedulers) as pure functions of the
// global step counter t: the number of optimizer steps already completed, so update k (from 0)
// runs at base_lr * lr_factor(options, k) and a continued stage evaluates at its continued count.
#pragma once

#include <cstdint>
#include <string>

namespace microdit::train {

struct ScheduleOptions {
  std::string kind = "constant";  // constant | constant_with_warmup | cosine_with_warmup
  int64_t warmup_steps = 0;       // t_w
  double alpha_f = 0.0;           // cosine: factor reached at t_max
  int64_t t_max = 0;              // cosine: step where the decay ends (> warmup_steps)
};

// With w = t / t_w (warm-up) and frac = min(1, (t - t_w) / (t_max - t_w)):
//   constant:             1
//   constant_with_warmup: w for t < t_w, else 1
//   cosine_with_warmup:   w for t < t_w, else alpha_f + (1 - alpha_f) * (1 + cos(pi * frac)) / 2
// Throws std::invalid_argument for an unknown kind, a negative t or warm-up, or a cosine t_max
// that does not lie after the warm-up.
double lr_factor(const ScheduleOptions& options, int64_t t);

}  // namespace microdit::train
