// Gang placement: best fit, fewest nodes, tensor-parallel groups, device preferences.
#include <gtest/gtest.h>

#include "scheduler/scheduler.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace petaring::scheduler {
namespace {

using testing::find_start;
using testing::kGiB;
using testing::make_job;
using testing::make_node;
using testing::nodes_of;

TEST(Placement, SmallJobGoesToTheFullestNodeThatFits) {
  Scheduler s;
  s.add_node(make_node(1, 8), 0);
  s.add_node(make_node(2, 4), 0);
  s.add_node(make_node(3, 2), 0);
  s.submit(make_job(1, 3), 0);
  auto decisions = s.tick(0);
  auto d = find_start(decisions, 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(nodes_of(d->placement), std::set<NodeId>{2});  // 4 free: best fit for 3
  testing::expect_consistent(s);
}

TEST(Placement, LargeJobTakesLargestNodesThenBestFit) {
  Scheduler s;
  s.add_node(make_node(1, 8), 0);
  s.add_node(make_node(2, 4), 0);
  s.add_node(make_node(3, 2), 0);
  s.add_node(make_node(4, 3), 0);
  s.submit(make_job(1, 10), 0);
  auto decisions = s.tick(0);
  auto d = find_start(decisions, 1);
  ASSERT_TRUE(d);
  ASSERT_EQ(d->placement.ranks.size(), 10u);
  // 8 from node 1, the remaining 2 from node 3 (exactly 2 free), not from node 2 or 4.
  EXPECT_EQ(nodes_of(d->placement), (std::set<NodeId>{1, 3}));
  EXPECT_EQ(s.pool().free, 7);
  testing::expect_consistent(s);
}

TEST(Placement, GangIsAllOrNothing) {
  Scheduler s;
  s.add_node(make_node(1, 2), 0);
  s.add_node(make_node(2, 2), 0);
  s.submit(make_job(1, 3), 0);
  s.submit(make_job(2, 2), 0);
  ASSERT_NE(find_start(s.tick(0), 1), std::nullopt);  // 3 of 4: spans both nodes
  s.submit(make_job(3, 2), 1);
  auto decisions = s.tick(1);
  EXPECT_EQ(find_start(decisions, 2), std::nullopt);
  EXPECT_EQ(find_start(decisions, 3), std::nullopt);
  EXPECT_EQ(s.pool().free, 1);  // nothing partially placed
  EXPECT_EQ(s.job(2).state, JobState::kQueued);
  testing::expect_consistent(s);
}

TEST(Placement, TensorParallelGroupsStayOnOneNodeOffUsb3) {
  Scheduler s;
  NodeInfo mixed = make_node(1, 4);
  mixed.devices[0].link = mixed.devices[1].link = Link::kUsb3;  // 2 PCIe + 2 USB3
  s.add_node(mixed, 0);
  s.add_node(make_node(2, 4, 16 * kGiB, Link::kUsb3), 0);  // all USB3
  s.add_node(make_node(3, 3), 0);                          // 3 PCIe
  JobSpec tp = make_job(1, 4);
  tp.tp_size = 2;
  s.submit(tp, 0);
  auto decisions = s.tick(0);
  auto d = find_start(decisions, 1);
  ASSERT_TRUE(d);
  // One group on node 1's two PCIe devices, one on node 3; none on node 2.
  EXPECT_EQ(nodes_of(d->placement), (std::set<NodeId>{1, 3}));
  testing::expect_valid_placement(s.snapshot(), tp, d->placement);
  for (const Slot& slot : d->placement.ranks) {
    if (slot.node == 1) {
      EXPECT_GE(slot.device, 2);  // the PCIe ones
    }
  }
}

TEST(Placement, TensorParallelJobWaitsWhenOnlyUsb3HasRoom) {
  Scheduler s;
  s.add_node(make_node(1, 8, 16 * kGiB, Link::kUsb3), 0);
  JobSpec tp = make_job(1, 4);
  tp.tp_size = 4;
  s.submit(tp, 0);
  EXPECT_TRUE(s.tick(0).empty());
  std::string why = s.describe_wait(1);
  EXPECT_NE(why.find("needs 4 GPUs"), std::string::npos) << why;
  EXPECT_NE(why.find("the pool has 0 such GPUs"), std::string::npos) << why;
}

TEST(Placement, PlainJobsUseUsb3DevicesFirst) {
  Scheduler s;
  NodeInfo mixed = make_node(1, 4);
  mixed.devices[2].link = mixed.devices[3].link = Link::kUsb3;
  s.add_node(mixed, 0);
  s.submit(make_job(1, 2), 0);
  auto d = find_start(s.tick(0), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->placement.ranks, (std::vector<Slot>{{1, 2}, {1, 3}}));
  // ... so a tensor-parallel pair still fits on the PCIe ones.
  JobSpec tp = make_job(2, 2);
  tp.tp_size = 2;
  s.submit(tp, 1);
  EXPECT_NE(find_start(s.tick(1), 2), std::nullopt);
}

TEST(Placement, MemoryAndKindFilterDevices) {
  Scheduler s;
  s.add_node(make_node(1, 4, 8 * kGiB), 0);
  s.add_node(make_node(2, 2, 24 * kGiB), 0);
  s.add_node(make_node(3, 2, 24 * kGiB, Link::kPcie, "gfx1100"), 0);
  JobSpec big = make_job(1, 2);
  big.memory_per_gpu_bytes = 20 * kGiB;
  big.device_kind = "cpu";
  s.submit(big, 0);
  auto d = find_start(s.tick(0), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(nodes_of(d->placement), std::set<NodeId>{2});
  JobSpec gpu = make_job(2, 2);
  gpu.device_kind = "gfx1100";
  s.submit(gpu, 1);
  d = find_start(s.tick(1), 2);
  ASSERT_TRUE(d);
  EXPECT_EQ(nodes_of(d->placement), std::set<NodeId>{3});
}

TEST(Placement, SmallestMemoryThatFitsOnANode) {
  Scheduler s;
  NodeInfo node = make_node(1, 3);
  node.devices[0].memory_bytes = 32 * kGiB;
  node.devices[1].memory_bytes = 8 * kGiB;
  node.devices[2].memory_bytes = 16 * kGiB;
  s.add_node(node, 0);
  JobSpec job = make_job(1, 1);
  job.memory_per_gpu_bytes = 12 * kGiB;
  s.submit(job, 0);
  auto d = find_start(s.tick(0), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->placement.ranks, (std::vector<Slot>{{1, 2}}));  // 16 GiB, not 32
}

TEST(Placement, ElasticJobTakesWhatFitsUpToMax) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.add_node(make_node(2, 2), 0);
  JobSpec elastic = make_job(1, 2);
  elastic.max_gpus = 16;
  s.submit(elastic, 0);
  auto d = find_start(s.tick(0), 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->placement.ranks.size(), 6u);
  JobSpec capped = make_job(2, 1);
  capped.max_gpus = 3;
  s.add_node(make_node(3, 8), 1);
  s.submit(capped, 1);
  d = find_start(s.tick(1), 2);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->placement.ranks.size(), 3u);
}

TEST(Placement, PoolTooSmallSaysHowManyAreNeededAndExist) {
  Scheduler s;
  for (NodeId id = 1; id <= 3; ++id) s.add_node(make_node(id, 4), 0);
  s.set_device_availability(3, 0, Availability::kReclaimed, 0);
  s.submit(make_job(1, 16), 0);
  s.submit(make_job(2, 2), 0);
  auto decisions = s.tick(0);
  EXPECT_EQ(find_start(decisions, 1), std::nullopt);
  EXPECT_NE(find_start(decisions, 2), std::nullopt);  // the impossible job blocks nobody
  std::string why = s.describe_wait(1);
  EXPECT_NE(why.find("needs 16 GPUs"), std::string::npos) << why;
  EXPECT_NE(why.find("the pool has 11 such GPUs"), std::string::npos) << why;
  EXPECT_NE(why.find("1 reclaimed"), std::string::npos) << why;
  EXPECT_EQ(s.job(1).wait.reason, WaitInfo::Reason::kPoolTooSmall);
  // The job starts once the pool grows.
  s.add_node(make_node(4, 8), 1);
  EXPECT_NE(find_start(s.tick(1), 1), std::nullopt);
}

}  // namespace
}  // namespace petaring::scheduler

namespace petaring::scheduler {
namespace {

// The pass caches "how many matching GPUs exist" per request shape; every inventory
// change must keep that count true, or a job would wait forever or block the queue.
TEST(Placement, PoolSizeFollowsEveryInventoryChange) {
  Scheduler s;
  s.add_node(testing::make_node(1, 4), 0);
  s.add_node(testing::make_node(2, 4), 0);
  s.submit(testing::make_job(1, 8), 0);
  s.set_device_availability(1, 0, Availability::kReclaimed, 0);
  EXPECT_TRUE(s.tick(0).empty());
  EXPECT_EQ(s.job(1).wait.reason, WaitInfo::Reason::kPoolTooSmall);
  EXPECT_EQ(s.job(1).wait.exist, 7);
  s.remove_node(2, 1);
  s.tick(1);
  EXPECT_EQ(s.job(1).wait.exist, 3);
  EXPECT_EQ(s.job(1).wait.reclaimed, 1);
  s.add_node(testing::make_node(2, 4), 2);
  s.set_device_availability(1, 0, Availability::kLent, 3);
  EXPECT_TRUE(testing::find_start(s.tick(3), 1));
}

}  // namespace
}  // namespace petaring::scheduler
