// The learning-rate schedule (trainer/schedule.h): warmup values, cosine end points,
// monotonic decay, and the constant schedule's exact peak.
#include "trainer/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace petaring {
namespace {

OptimizerConfig config(const char* schedule, int64_t warmup, double lr, double min_lr) {
  OptimizerConfig c;
  c.schedule = schedule;
  c.warmup_steps = warmup;
  c.lr = lr;
  c.min_lr = min_lr;
  return c;
}

TEST(ScheduleTest, ConstantWithoutWarmupIsExactlyLr) {
  const OptimizerConfig c = config("constant", 0, 0.05, 0.0);
  for (int64_t step : {0, 1, 500, 937, 5000}) EXPECT_EQ(scheduled_lr(c, step, 938), 0.05);
}

TEST(ScheduleTest, WarmupRisesLinearlyFromZero) {
  for (const char* schedule : {"constant", "cosine"}) {
    SCOPED_TRACE(schedule);
    const OptimizerConfig c = config(schedule, 100, 1e-3, 1e-5);
    EXPECT_EQ(scheduled_lr(c, 0, 1000), 0.0);
    EXPECT_DOUBLE_EQ(scheduled_lr(c, 1, 1000), 1e-5);
    EXPECT_DOUBLE_EQ(scheduled_lr(c, 25, 1000), 2.5e-4);
    EXPECT_DOUBLE_EQ(scheduled_lr(c, 50, 1000), 5e-4);
    EXPECT_DOUBLE_EQ(scheduled_lr(c, 99, 1000), 9.9e-4);
    EXPECT_EQ(scheduled_lr(c, 100, 1000), 1e-3);  // the peak, at the end of warmup
  }
  // The constant schedule stays at the peak after warmup.
  const OptimizerConfig c = config("constant", 100, 1e-3, 0.0);
  EXPECT_EQ(scheduled_lr(c, 101, 1000), 1e-3);
  EXPECT_EQ(scheduled_lr(c, 999, 1000), 1e-3);
}

TEST(ScheduleTest, CosineGoesFromLrToMinLr) {
  const OptimizerConfig c = config("cosine", 10, 0.1, 0.01);
  EXPECT_DOUBLE_EQ(scheduled_lr(c, 10, 110), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(c, 60, 110), 0.055);  // halfway: the mean of both ends
  const double quarter = 0.01 + 0.09 * 0.5 * (1 + std::cos(std::numbers::pi / 4));
  EXPECT_DOUBLE_EQ(scheduled_lr(c, 35, 110), quarter);
  EXPECT_DOUBLE_EQ(scheduled_lr(c, 110, 110), 0.01);
  EXPECT_DOUBLE_EQ(scheduled_lr(c, 500, 110), 0.01);  // stays at min_lr past the end
  const OptimizerConfig to_zero = config("cosine", 0, 0.2, 0.0);
  EXPECT_EQ(scheduled_lr(to_zero, 0, 50), 0.2);
  EXPECT_NEAR(scheduled_lr(to_zero, 50, 50), 0.0, 1e-17);
}

TEST(ScheduleTest, CosineDecaysMonotonicallyAfterWarmup) {
  const OptimizerConfig c = config("cosine", 20, 1e-3, 1e-4);
  double previous = scheduled_lr(c, 20, 300);
  for (int64_t step = 21; step <= 300; ++step) {
    const double lr = scheduled_lr(c, step, 300);
    EXPECT_LT(lr, previous) << "step " << step;
    EXPECT_GE(lr, 1e-4) << "step " << step;
    previous = lr;
  }
  double rising = -1;
  for (int64_t step = 0; step <= 20; ++step) {
    const double lr = scheduled_lr(c, step, 300);
    EXPECT_GT(lr, rising) << "step " << step;
    rising = lr;
  }
}

TEST(ScheduleTest, WarmupLongerThanTheRunOnlyWarmsUp) {
  const OptimizerConfig c = config("cosine", 100, 1e-3, 0.0);
  for (int64_t step = 0; step < 50; ++step) {
    EXPECT_DOUBLE_EQ(scheduled_lr(c, step, 50), 1e-3 * static_cast<double>(step) / 100.0);
  }
}

}  // namespace
}  // namespace petaring
