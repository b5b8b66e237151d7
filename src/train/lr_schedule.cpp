#include "microdit/train/lr_schedule.h"

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace microdit::train {
namespace {

// Composer's linear warm-up from 0: the first update (t = 0) runs at lr 0.
double warmup_factor(int64_t t, int64_t warmup_steps) {
  return static_cast<double>(t) / static_cast<double>(warmup_steps);
}

// Composer's CosineAnnealingWithWarmupScheduler after the warm-up.
double cosine_factor(const ScheduleOptions& o, int64_t t) {
  const double frac = std::min(
      1.0, static_cast<double>(t - o.warmup_steps) / static_cast<double>(o.t_max - o.warmup_steps));
  return o.alpha_f + (1.0 - o.alpha_f) * (1.0 + std::cos(std::numbers::pi * frac)) / 2.0;
}

}  // namespace

double lr_factor(const ScheduleOptions& options, int64_t t) {
  if (t < 0) throw std::invalid_argument(c10::str("lr schedule: step ", t, " is negative"));
  if (options.warmup_steps < 0) {
    throw std::invalid_argument(
        c10::str("lr schedule: warmup_steps ", options.warmup_steps, " is negative"));
  }
  const bool warming_up = t < options.warmup_steps;
  if (options.kind == "constant") return 1.0;
  if (options.kind == "constant_with_warmup") {
    return warming_up ? warmup_factor(t, options.warmup_steps) : 1.0;
  }
  if (options.kind == "cosine_with_warmup") {
    if (options.t_max <= options.warmup_steps) {
      throw std::invalid_argument(c10::str("lr schedule cosine_with_warmup: t_max (", options.t_max,
                                           ") must be greater than warmup_steps (",
                                           options.warmup_steps, ")"));
    }
    return warming_up ? warmup_factor(t, options.warmup_steps) : cosine_factor(options, t);
  }
  throw std::invalid_argument(
      c10::str("unknown lr schedule kind \"", options.kind,
               "\" (expected constant, constant_with_warmup or cosine_with_warmup)"));
}

}  // namespace microdit::train
