// Accounting (GPU-ms and estimated FLOPs per job, tenant and node) and snapshot/restore.
#include <gtest/gtest.h>

#include <random>

#include "scheduler/scheduler.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace petaring::scheduler {
namespace {

using testing::find_start;
using testing::make_job;
using testing::make_node;

const LedgerRow* row(const std::vector<LedgerRow>& rows, const std::string& key) {
  for (const LedgerRow& r : rows) {
    if (r.key == key) return &r;
  }
  return nullptr;
}

TEST(Ledger, GpuTimeAndFlopsPerJobTenantAndNode) {
  Scheduler s;
  s.add_node(make_node(1, 2, 16 * testing::kGiB, Link::kPcie, "cpu", 2e12), 0);
  s.add_node(make_node(2, 2, 16 * testing::kGiB, Link::kPcie, "cpu", 1e12), 0);
  s.submit(make_job(1, 3, "alice"), 0);
  s.submit(make_job(2, 1, "bob"), 0);
  s.tick(0);
  s.job_finished(1, 10'000);  // 3 GPUs x 10 s
  s.tick(20'000);             // bob's job still runs: 20 s so far
  Ledger ledger = s.ledger();
  ASSERT_NE(row(ledger.jobs, "1"), nullptr);
  EXPECT_EQ(row(ledger.jobs, "1")->usage.gpu_ms, 30'000);
  EXPECT_EQ(row(ledger.jobs, "2")->usage.gpu_ms, 20'000);
  EXPECT_EQ(row(ledger.tenants, "alice")->usage.gpu_ms, 30'000);
  EXPECT_EQ(row(ledger.tenants, "bob")->usage.gpu_ms, 20'000);
  EXPECT_EQ(ledger.total.gpu_ms, 50'000);
  // Job 1: best fit puts 2 ranks on one node and 1 on the other; FLOPs follow the speeds.
  const JobRecord& j1 = s.job(1);
  double expected = 0;
  for (const Slot& slot : j1.placement.ranks) expected += (slot.node == 1 ? 2e12 : 1e12) * 10;
  EXPECT_DOUBLE_EQ(row(ledger.jobs, "1")->usage.flops, expected);
  int64_t by_nodes = row(ledger.nodes, "1")->usage.gpu_ms + row(ledger.nodes, "2")->usage.gpu_ms;
  EXPECT_EQ(by_nodes, 50'000);
  // Between ticks the ledger still counts up to the last event.
  s.job_finished(2, 25'000);
  EXPECT_EQ(s.ledger().total.gpu_ms, 55'000);
  testing::expect_consistent(s);
}

TEST(Ledger, ReclaimedGpuIsBilledUntilTheCheckpointEnds) {
  Scheduler s;
  s.add_node(make_node(1, 2), 0);
  s.submit(make_job(1, 2), 0);
  s.tick(0);
  s.set_device_availability(1, 0, Availability::kReclaimed, 1'000);
  s.job_stopped(1, 1'500);  // checkpointing is useful work
  EXPECT_EQ(s.job(1).usage.gpu_ms, 3'000);
}

// A scripted history, interrupted by snapshot + restore at every step, gives the same
// decisions and the same final state as the uninterrupted run.
std::vector<Decision> step(Scheduler& s, int i, std::mt19937& rng) {
  TimeMs now = 1000 * i;
  std::vector<Decision> out;
  auto add = [&](std::vector<Decision> d) { out.insert(out.end(), d.begin(), d.end()); };
  if (i < 6) s.add_node(make_node(i + 1, 4), now);
  JobSpec job = make_job(i + 1, 1 + static_cast<int>(rng() % 6), i % 2 ? "alice" : "bob",
                         static_cast<int>(rng() % 2), 1000 * (1 + rng() % 5));
  s.submit(job, now);
  if (i == 8) add(s.set_device_availability(2, 1, Availability::kReclaimed, now));
  if (i == 11) add(s.remove_node(3, now));
  for (JobId id : s.jobs_in_state(JobState::kStopping)) add(s.job_stopped(id, now));
  for (JobId id : s.jobs_in_state(JobState::kRunning)) {
    if (rng() % 3 == 0) add(s.job_finished(id, now));
  }
  add(s.tick(now));
  return out;
}

TEST(Snapshot, RestoredSchedulerMakesTheSameDecisions) {
  std::mt19937 rng_a(7), rng_b(7);
  Scheduler a;
  auto b = std::make_unique<Scheduler>();
  for (int i = 0; i < 30; ++i) {
    auto da = step(a, i, rng_a);
    auto db = step(*b, i, rng_b);
    ASSERT_EQ(da.size(), db.size()) << "step " << i;
    for (size_t k = 0; k < da.size(); ++k) {
      EXPECT_EQ(da[k].job, db[k].job) << "step " << i;
      EXPECT_EQ(da[k].action, db[k].action) << "step " << i;
      EXPECT_EQ(da[k].placement.ranks, db[k].placement.ranks) << "step " << i;
    }
    b = std::make_unique<Scheduler>(b->snapshot());
    testing::expect_consistent(*b);
  }
  SchedulerState sa = a.snapshot(), sb = b->snapshot();
  ASSERT_EQ(sa.jobs.size(), sb.jobs.size());
  for (size_t k = 0; k < sa.jobs.size(); ++k) {
    EXPECT_EQ(sa.jobs[k].state, sb.jobs[k].state);
    EXPECT_EQ(sa.jobs[k].usage.gpu_ms, sb.jobs[k].usage.gpu_ms);
    EXPECT_EQ(sa.jobs[k].usage.flops, sb.jobs[k].usage.flops);
  }
  EXPECT_EQ(a.ledger().total.gpu_ms, b->ledger().total.gpu_ms);
  EXPECT_GT(a.ledger().total.gpu_ms, 0);
}

}  // namespace
}  // namespace petaring::scheduler
