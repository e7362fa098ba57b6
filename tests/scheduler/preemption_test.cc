// Owners reclaiming GPUs, devices and nodes dying: stop decisions, re-placement,
// shrinking elastic jobs, and GPUs held until the ranks are gone.
#include <gtest/gtest.h>

#include "runtime/error.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace petaring::scheduler {
namespace {

using testing::find_start;
using testing::make_job;
using testing::make_node;
using testing::nodes_of;

TEST(Reclaim, JobCheckpointsStopsAndIsPlacedAgainElsewhere) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.add_node(make_node(2, 4), 0);
  s.submit(make_job(1, 4), 0);
  auto d = find_start(s.tick(0), 1);
  ASSERT_TRUE(d);
  NodeId first = d->placement.ranks[0].node;
  auto stops = s.set_device_availability(first, 1, Availability::kReclaimed, 10);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].action, Decision::Action::kStop);
  EXPECT_EQ(stops[0].job, 1);
  EXPECT_EQ(stops[0].cause, StopCause::kReclaimed);
  EXPECT_TRUE(stops[0].checkpoint_first);
  EXPECT_NE(stops[0].reason.find("reclaimed device 1"), std::string::npos) << stops[0].reason;
  // Until the ranks are gone the job keeps every GPU, the reclaimed one included.
  EXPECT_EQ(s.holder(first, 1), 1);
  EXPECT_TRUE(s.tick(11).empty());
  testing::expect_consistent(s);
  s.job_stopped(1, 20);
  EXPECT_EQ(s.job(1).state, JobState::kQueued);
  EXPECT_EQ(s.job(1).restarts, 1);
  EXPECT_EQ(s.holder(first, 1), 0);
  d = find_start(s.tick(20), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(nodes_of(d->placement), std::set<NodeId>{first == 1 ? 2 : 1});
  testing::expect_consistent(s);
}

TEST(Reclaim, ElasticJobShrinks) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  JobSpec elastic = make_job(1, 2);
  elastic.max_gpus = 4;
  s.submit(elastic, 0);
  ASSERT_EQ(find_start(s.tick(0), 1)->placement.ranks.size(), 4u);
  ASSERT_EQ(s.set_device_availability(1, 3, Availability::kReclaimed, 5).size(), 1u);
  s.job_stopped(1, 6);
  auto d = find_start(s.tick(6), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->placement.ranks, (std::vector<Slot>{{1, 0}, {1, 1}, {1, 2}}));
  // The owner lends it again: nothing moves (jobs do not grow while running).
  EXPECT_TRUE(s.set_device_availability(1, 3, Availability::kLent, 7).empty());
  EXPECT_TRUE(s.tick(7).empty());
  EXPECT_EQ(s.pool().free, 1);
}

TEST(Reclaim, RigidJobWaitsForTheSameCount) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(1, 4), 0);
  s.tick(0);
  s.set_device_availability(1, 0, Availability::kReclaimed, 1);
  s.job_stopped(1, 2);
  EXPECT_TRUE(s.tick(2).empty());
  EXPECT_NE(s.describe_wait(1).find("1 reclaimed by their owners"), std::string::npos)
      << s.describe_wait(1);
  s.set_device_availability(1, 0, Availability::kLent, 3);
  EXPECT_TRUE(find_start(s.tick(3), 1));
}

TEST(Reclaim, WholeNodeReclaimStopsEachJobOnce) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(1, 2), 0);
  s.submit(make_job(2, 2), 0);
  s.tick(0);
  auto stops = s.set_node_availability(1, Availability::kReclaimed, 1);
  ASSERT_EQ(stops.size(), 2u);
  EXPECT_EQ(stops[0].job + stops[1].job, 3);
  EXPECT_EQ(s.pool().free, 0);
}

TEST(Loss, NodeRemovalRestartsTheJobOnWhatRemains) {
  Scheduler s;
  for (NodeId id = 1; id <= 3; ++id) s.add_node(make_node(id, 2), 0);
  s.submit(make_job(1, 4), 0);
  auto d = find_start(s.tick(0), 1);
  ASSERT_TRUE(d);
  std::set<NodeId> used = nodes_of(d->placement);
  ASSERT_EQ(used.size(), 2u);
  NodeId dead = *used.begin(), survivor = *used.rbegin();
  auto stops = s.remove_node(dead, 1000);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].cause, StopCause::kLost);
  EXPECT_FALSE(stops[0].checkpoint_first);
  // The survivor's GPUs stay held until the job reports its ranks stopped.
  EXPECT_EQ(s.holder(survivor, 0), 1);
  EXPECT_EQ(s.job(1).held.size(), 2u);
  EXPECT_TRUE(s.tick(1500).empty());
  s.job_stopped(1, 2000);
  d = find_start(s.tick(2000), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->placement.ranks.size(), 4u);
  EXPECT_EQ(nodes_of(d->placement).count(dead), 0u);
  // Billing stopped at the loss: 4 GPUs x 1 s, not until job_stopped.
  EXPECT_EQ(s.job(1).usage.gpu_ms, 4000);
  testing::expect_consistent(s);
}

TEST(Loss, DeadDeviceLeavesTheJobAtOnce) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(1, 4), 0);
  s.tick(0);
  auto stops = s.set_device_availability(1, 2, Availability::kDead, 10);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].cause, StopCause::kLost);
  EXPECT_EQ(s.holder(1, 2), 0);
  EXPECT_EQ(s.job(1).held.size(), 3u);
  EXPECT_EQ(s.pool().free, 0);  // a dead device is not free
  s.job_stopped(1, 11);
  EXPECT_EQ(s.pool().free, 3);
  EXPECT_EQ(s.pool().dead, 1);
  testing::expect_consistent(s);
}

TEST(Loss, ReclaimThenLossWhileStoppingIsALoss) {
  Scheduler s;
  s.add_node(make_node(1, 2), 0);
  s.submit(make_job(1, 2), 0);
  s.tick(0);
  ASSERT_EQ(s.set_device_availability(1, 0, Availability::kReclaimed, 1).size(), 1u);
  EXPECT_TRUE(s.set_device_availability(1, 1, Availability::kDead, 2).empty());  // already stopping
  EXPECT_EQ(s.job(1).stop_cause, StopCause::kLost);
  s.job_stopped(1, 3);
  EXPECT_EQ(s.job(1).state, JobState::kQueued);
  EXPECT_EQ(s.job(1).usage.gpu_ms, 2 * 2);  // billed until the loss at t = 2 ms
}

TEST(Loss, NodeRejoinsAfterItsJobsStopped) {
  Scheduler s;
  s.add_node(make_node(1, 2), 0);
  s.submit(make_job(1, 2), 0);
  s.tick(0);
  s.set_node_availability(1, Availability::kReclaimed, 1);
  try {
    s.add_node(make_node(1, 2), 2);
    FAIL() << "a node re-registering while a job holds its GPUs must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFailedPrecondition);
    EXPECT_NE(std::string(e.what()).find("job 1 still holds"), std::string::npos) << e.what();
  }
  s.job_stopped(1, 3);
  s.add_node(make_node(1, 2), 4);  // fresh registration: lent again
  EXPECT_TRUE(find_start(s.tick(4), 1));
}

}  // namespace
}  // namespace petaring::scheduler
