// The queue: priorities, fair share, EASY backfill with a reservation for the head job.
#include <gtest/gtest.h>

#include "runtime/error.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace petaring::scheduler {
namespace {

using testing::find_start;
using testing::make_job;
using testing::make_node;

TEST(Queue, HigherPriorityFirst) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(1, 4, "alice", /*priority=*/0), 0);
  s.submit(make_job(2, 4, "alice", /*priority=*/5), 1);
  auto decisions = s.tick(1);
  EXPECT_FALSE(find_start(decisions, 1));
  EXPECT_TRUE(find_start(decisions, 2));
}

TEST(Queue, EarlierSubmissionFirstWithinATenant) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(2, 4), 0);
  s.submit(make_job(1, 4), 1);  // lower id, later submission
  auto decisions = s.tick(1);
  EXPECT_TRUE(find_start(decisions, 2));
  EXPECT_FALSE(find_start(decisions, 1));
}

TEST(Queue, FairShareFavoursTheTenantThatUsedLess) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(1, 4, "alice"), 0);
  ASSERT_TRUE(find_start(s.tick(0), 1));
  s.job_finished(1, 60'000);  // alice used 240 GPU-s
  s.submit(make_job(2, 4, "alice"), 60'000);
  s.submit(make_job(3, 4, "bob"), 60'001);  // later, but bob used nothing
  auto decisions = s.tick(60'001);
  EXPECT_TRUE(find_start(decisions, 3));
  EXPECT_FALSE(find_start(decisions, 2));
  EXPECT_EQ(s.job(2).state, JobState::kQueued);
}

TEST(Queue, PriorityBeatsFairShare) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.submit(make_job(1, 4, "alice"), 0);
  s.tick(0);
  s.job_finished(1, 60'000);
  s.submit(make_job(2, 4, "alice", /*priority=*/1), 60'000);
  s.submit(make_job(3, 4, "bob"), 60'000);
  EXPECT_TRUE(find_start(s.tick(60'000), 2));
}

// Pool: 8 GPUs on one node. A long job holds 6 until t = 100 s; the head needs all 8.
class Backfill : public ::testing::Test {
 protected:
  void SetUp() override {
    s.add_node(make_node(1, 8), 0);
    s.submit(make_job(1, 6, "alice", 0, /*runtime=*/100'000), 0);
    ASSERT_TRUE(find_start(s.tick(0), 1));
    s.submit(make_job(2, 8, "alice", 0, 200'000), 1);  // the head
  }
  Scheduler s;
};

TEST_F(Backfill, ShortJobUsesReservedGpusWhenItEndsBeforeTheHeadStarts) {
  s.submit(make_job(3, 2, "alice", 0, /*runtime=*/50'000), 1);
  auto decisions = s.tick(1);
  EXPECT_FALSE(find_start(decisions, 2));
  auto d = find_start(decisions, 3);
  ASSERT_TRUE(d);
  EXPECT_NE(d->reason.find("backfilled"), std::string::npos) << d->reason;
  EXPECT_EQ(s.job(2).wait.reason, WaitInfo::Reason::kHeadOfQueue);
  EXPECT_EQ(s.job(2).wait.reserved_until, 100'000);
}

TEST_F(Backfill, LongOrUnknownJobDoesNotDelayTheHead) {
  s.submit(make_job(3, 2, "alice", 0, /*runtime=*/150'000), 1);  // would end after t = 100 s
  s.submit(make_job(4, 1, "alice", 0, /*runtime=*/0), 1);        // unknown runtime
  auto decisions = s.tick(1);
  EXPECT_TRUE(decisions.empty());
  EXPECT_EQ(s.job(3).wait.reason, WaitInfo::Reason::kBehindHead);
  EXPECT_EQ(s.job(3).wait.head, 2);
  std::string why = s.describe_wait(3);
  EXPECT_NE(why.find("queued behind job 2"), std::string::npos) << why;
  // When the long job ends, the head starts first.
  s.job_finished(1, 100'000);
  decisions = s.tick(100'000);
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_EQ(decisions[0].job, 2);
}

TEST(BackfillOutsideReservation, UnknownRuntimeRunsOnGpusTheHeadWillNotUse) {
  Scheduler s;
  s.add_node(make_node(1, 4), 0);
  s.add_node(make_node(2, 4), 0);
  s.add_node(make_node(3, 2), 0);
  s.submit(make_job(1, 4), 0);
  ASSERT_TRUE(find_start(s.tick(0), 1));  // best fit: node 1 or 2, whole
  s.submit(make_job(2, 8), 1);            // head: needs both 4-GPU nodes
  s.submit(make_job(3, 2), 2);  // unknown runtime: only node 3 is open to it
  s.submit(make_job(4, 2), 3);      // nothing left outside the reservation
  auto decisions = s.tick(3);
  auto d = find_start(decisions, 3);
  ASSERT_TRUE(d);
  EXPECT_EQ(testing::nodes_of(d->placement), std::set<NodeId>{3});
  EXPECT_FALSE(find_start(decisions, 4));
  EXPECT_EQ(s.job(2).wait.reserved_until, kNever);  // job 1 has no estimate
  testing::expect_consistent(s);
}

TEST(StrictOrder, WithoutBackfillNothingPassesTheHead) {
  Scheduler s(SchedulerOptions{.backfill = false});
  s.add_node(make_node(1, 8), 0);
  s.submit(make_job(1, 6, "alice", 0, 100'000), 0);
  s.tick(0);
  s.submit(make_job(2, 8), 1);
  s.submit(make_job(3, 1, "alice", 0, 1'000), 1);
  EXPECT_TRUE(s.tick(1).empty());
}

TEST(Queue, CancelQueuedAndRunning) {
  Scheduler s;
  s.add_node(make_node(1, 2), 0);
  s.submit(make_job(1, 2), 0);
  s.submit(make_job(2, 2), 0);
  s.tick(0);
  EXPECT_TRUE(s.cancel(2, 1).empty());
  EXPECT_EQ(s.job(2).state, JobState::kCancelled);
  auto stop = s.cancel(1, 2);
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0].action, Decision::Action::kStop);
  EXPECT_EQ(stop[0].cause, StopCause::kCancelled);
  EXPECT_TRUE(stop[0].checkpoint_first);
  EXPECT_EQ(s.job(1).state, JobState::kStopping);
  EXPECT_EQ(s.holder(1, 0), 1);  // held until the ranks are gone
  s.job_stopped(1, 3);
  EXPECT_EQ(s.job(1).state, JobState::kCancelled);
  EXPECT_EQ(s.pool().free, 2);
  EXPECT_TRUE(s.cancel(1, 4).empty());  // again: nothing happens
}

TEST(Queue, FailedJobIsTerminal) {
  Scheduler s;
  s.add_node(make_node(1, 2), 0);
  s.submit(make_job(1, 2), 0);
  s.tick(0);
  s.job_failed(1, 5, "loss became NaN at step 12");
  EXPECT_EQ(s.job(1).state, JobState::kFailed);
  EXPECT_EQ(s.describe_wait(1), "failed: loss became NaN at step 12");
  EXPECT_TRUE(s.tick(6).empty());
  EXPECT_EQ(s.pool().free, 2);
}

TEST(Queue, BadEventsAreRejectedWithReasons) {
  Scheduler s;
  s.add_node(make_node(1, 2), 10);
  auto kind_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kInternal;
  };
  EXPECT_EQ(kind_of([&] { s.tick(5); }), ErrorKind::kFailedPrecondition);  // time went back
  JobSpec bad = make_job(1, 3);
  bad.tp_size = 2;
  try {
    s.submit(bad, 10);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("multiples of the tensor-parallel size 2"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(kind_of([&] { s.submit(make_job(1, 1, ""), 10); }), ErrorKind::kInvalidArgument);
  s.submit(make_job(1, 1), 10);
  EXPECT_EQ(kind_of([&] { s.submit(make_job(1, 1), 10); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind_of([&] { s.job_finished(1, 10); }), ErrorKind::kFailedPrecondition);  // queued
  EXPECT_EQ(kind_of([&] { s.cancel(99, 10); }), ErrorKind::kNotFound);
  EXPECT_EQ(kind_of([&] { s.remove_node(7, 10); }), ErrorKind::kNotFound);
  EXPECT_EQ(kind_of([&] { s.set_device_availability(1, 9, Availability::kDead, 10); }),
            ErrorKind::kNotFound);
}

}  // namespace
}  // namespace petaring::scheduler

namespace petaring::scheduler {
namespace {

TEST(Queue, WaitReasonFollowsTheCurrentHead) {
  Scheduler s;
  s.add_node(testing::make_node(1, 4), 0);
  s.submit(testing::make_job(1, 3, "alice", 0, 10'000), 0);
  s.tick(0);
  s.submit(testing::make_job(2, 4), 1);
  s.tick(1);
  EXPECT_NE(s.describe_wait(2).find("first in line"), std::string::npos) << s.describe_wait(2);
  // A higher-priority job takes the last GPU; with nothing free the next pass stops at once.
  s.submit(testing::make_job(3, 1, "alice", /*priority=*/9), 2);
  ASSERT_TRUE(testing::find_start(s.tick(2), 3));
  s.tick(3);
  std::string why = s.describe_wait(2);
  EXPECT_EQ(why.find("first in line"), std::string::npos) << why;
  EXPECT_NE(why.find("0 GPUs free now"), std::string::npos) << why;
}

}  // namespace
}  // namespace petaring::scheduler

namespace petaring::scheduler {
namespace {

TEST(Queue, TenantsTakeTurnsWithinAPass) {
  Scheduler s;
  s.add_node(testing::make_node(1, 4), 0);
  for (JobId id = 1; id <= 4; ++id) s.submit(testing::make_job(id, 1, "alice"), 0);
  for (JobId id = 5; id <= 6; ++id) s.submit(testing::make_job(id, 1, "bob"), 1);
  auto decisions = s.tick(1);
  ASSERT_EQ(decisions.size(), 4u);
  std::vector<JobId> started;
  for (const Decision& d : decisions) started.push_back(d.job);
  // Neither has used anything: alice's first job, then bob's (alice is charged for hers),
  // then the earlier submission at equal charge, and so on.
  EXPECT_EQ(started, (std::vector<JobId>{1, 5, 2, 6}));
}

}  // namespace
}  // namespace petaring::scheduler
