// The learning-rate schedule of a recipe as a pure function of the step.
//
// Steps count updates already made: step 0 is the first update, as the `last_epoch`
// counter of PyTorch's LambdaLR after each scheduler.step(). With W = warmup_steps,
// T = total_steps and peak = lr:
//   step < W:               peak * step / W          (linear warmup from 0)
//   constant, step >= W:    peak
//   cosine,   step >= W:    min_lr + (peak - min_lr) * (1 + cos(pi * p)) / 2,
//                           p = (step - W) / (T - W), clamped to [0, 1]
// so cosine reaches min_lr at step T (just after the last update) and stays there.
#pragma once

#include <cstdint>

#include "trainer/recipe.h"

namespace petaring {

// The rate for update `step` (0-based) of a run of `total_steps` updates. Depends on
// config.lr, schedule, warmup_steps and min_lr only; returns config.lr exactly for a
// constant schedule after warmup.
double scheduled_lr(const OptimizerConfig& config, int64_t step, int64_t total_steps);

}  // namespace petaring
