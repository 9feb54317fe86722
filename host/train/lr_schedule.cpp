#include "host/train/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace ebm {

double lr_factor(const TrainConfig& t, int64_t steps_taken, int64_t epoch, int64_t total_steps) {
  const int64_t w = t.lr_warmup_steps;
  const double warm = w > 0 ? std::min(1.0, double(steps_taken + 1) / double(w)) : 1.0;
  double sched = 1.0;
  if (t.lr_schedule == "step") {
    sched = std::pow(t.lr_gamma, double(epoch / std::max(1, t.lr_step_epochs)));
  } else if (t.lr_schedule == "cosine") {
    const double span = double(std::max<int64_t>(1, total_steps - w));
    const double p = std::clamp(double(steps_taken - w) / span, 0.0, 1.0);
    sched = t.lr_min_factor + (1.0 - t.lr_min_factor) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
  }
  return warm * sched;
}

}  // namespace ebm
