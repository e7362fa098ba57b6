#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/check.h"

namespace petaring {

double scheduled_lr(const OptimizerConfig& config, int64_t step, int64_t total_steps) {
  PR_CHECK_GE(step, 0) << "scheduled_lr step";
  const int64_t warmup = config.warmup_steps;
  if (step < warmup) {
    return config.lr * static_cast<double>(step) / static_cast<double>(warmup);
  }
  if (config.schedule != "cosine") return config.lr;
  const int64_t decay_steps = std::max<int64_t>(total_steps - warmup, 1);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(decay_steps));
  return config.min_lr +
         (config.lr - config.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace petaring
