// Property tests (small random pools, every invariant checked after every event) and the
// large seeded simulation: 1,000 nodes, 10,000 jobs, node deaths, device deaths and
// reclaims. See tests/scheduler/pool_simulation.h for what is checked.
#include <gtest/gtest.h>

#include "tests/scheduler/pool_simulation.h"

namespace petaring::scheduler {
namespace {

using testing::PoolSimulation;
using testing::SimulationParams;

TEST(SchedulerProperties, SmallRandomPoolsKeepEveryInvariantAfterEveryEvent) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimulationParams p;
    p.seed = seed;
    p.nodes = 3 + static_cast<int>(seed % 10);
    p.jobs = 60;
    p.arrival_span_ms = 300'000;
    p.node_deaths = 3;
    p.device_reclaims = 8;
    p.device_deaths = 2;
    p.impossible_jobs = 2;
    p.check_every_event = true;
    auto report = PoolSimulation(p).run();
    if (HasFailure()) return;
    EXPECT_EQ(report.finished + report.failed + report.cancelled + report.too_big, p.jobs);
  }
}

TEST(SchedulerProperties, SameEventsGiveTheSameDecisions) {
  SimulationParams p;
  p.nodes = 40;
  p.jobs = 400;
  p.arrival_span_ms = 600'000;
  p.node_deaths = 5;
  p.device_reclaims = 20;
  auto first = PoolSimulation(p).run();
  auto again = PoolSimulation(p).run();
  EXPECT_EQ(first.decisions_hash, again.decisions_hash);
  EXPECT_EQ(first.starts, again.starts);
  EXPECT_EQ(first.gpu_ms, again.gpu_ms);
  p.seed = 2;
  EXPECT_NE(PoolSimulation(p).run().decisions_hash, first.decisions_hash);  // the hash sees something
}

TEST(SchedulerSimulation, ThousandNodesTenThousandJobsWithFailuresAndReclaims) {
  SimulationParams p;  // defaults: 1,000 nodes, 10,000 jobs, seed 1
  auto report = PoolSimulation(p).run();
  EXPECT_EQ(report.finished + report.failed + report.cancelled + report.too_big, p.jobs);
  EXPECT_GT(report.stops, 50);        // faults really hit running jobs
  EXPECT_GT(report.restarts, 50);     // ... and those jobs were placed again
  EXPECT_GT(report.backfilled, 0);
  RecordProperty("starts", report.starts);
  RecordProperty("end_ms", std::to_string(report.end_ms));
  std::printf("simulation: %d starts, %d stops, %d restarts, %d backfilled, %d finished, %d failed, "
              "%d cancelled, %d too big; drained at t = %lld s; %.0f GPU-hours\n",
              report.starts, report.stops, report.restarts, report.backfilled, report.finished,
              report.failed, report.cancelled, report.too_big,
              static_cast<long long>(report.end_ms / 1000), report.gpu_ms / 3.6e6);
}

}  // namespace
}  // namespace petaring::scheduler
