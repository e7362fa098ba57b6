// Queue and Event semantics every backend must keep: in-order execution, asynchronous
// enqueue, events, cross-queue waits, error surfacing, timeouts, draining destructors.
// Gates (std::promise) make the tests deterministic; sleeps appear only where the
// contract is about time.
#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

using QueueTest = DeviceTest;
using namespace std::chrono_literals;

TEST_P(QueueTest, RunsWorkInEnqueueOrder) {
  std::vector<int> order;
  Tensor x = make({8});
  for (int i = 0; i < 50; ++i) queue_->host_call([&order, i] { order.push_back(i); });
  // fill then scale gives 6; the other order would give 2.
  kernels::fill(*queue_, x, 2.0f);
  kernels::scale(*queue_, x, 3.0f);
  const auto values = download(x);
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
  for (float v : values) EXPECT_EQ(v, 6.0f);
}

TEST_P(QueueTest, EnqueueReturnsBeforeWorkRunsAndEventsTrackCompletion) {
  std::promise<void> gate;
  std::shared_future<void> opened = gate.get_future().share();
  std::atomic<bool> ran{false};
  queue_->host_call([opened] { opened.wait(); });
  queue_->host_call([&ran] { ran = true; });  // would deadlock if enqueue ran work inline
  std::unique_ptr<Event> event = queue_->record();
  EXPECT_FALSE(event->query());
  EXPECT_FALSE(ran.load());
  gate.set_value();
  event->wait();
  EXPECT_TRUE(event->query());
  EXPECT_TRUE(ran.load());
  queue_->synchronize();
}

TEST_P(QueueTest, WaitForMakesAnotherQueueWaitForTheEvent) {
  std::unique_ptr<Queue> other = device_->create_queue(QueueKind::kCopy);
  EXPECT_NE(other->name(), queue_->name());
  std::promise<void> gate;
  std::shared_future<void> opened = gate.get_future().share();
  std::atomic<int> flag{0};
  int seen = -1;
  queue_->host_call([opened] { opened.wait(); });
  queue_->host_call([&flag] { flag = 1; });
  std::shared_ptr<Event> produced = queue_->record();
  other->wait_for(produced);
  other->host_call([&] { seen = flag.load(); });
  std::unique_ptr<Event> consumed = other->record();
  std::this_thread::sleep_for(20ms);  // give a broken wait_for the chance to run early
  EXPECT_FALSE(consumed->query());
  gate.set_value();
  other->synchronize();
  EXPECT_EQ(seen, 1);
  queue_->synchronize();
}

TEST_P(QueueTest, SynchronizeRethrowsTheFirstErrorWithTheQueueName) {
  std::atomic<int> after{0};
  queue_->host_call([] { PR_FAIL(kNotFound, "first failure"); });
  queue_->host_call([] { PR_FAIL(kTimeout, "second failure"); });
  queue_->host_call([&after] { ++after; });
  const std::string message = expect_error([&] { queue_->synchronize(); }, ErrorKind::kNotFound,
                                           {queue_->name(), "first failure"});
  EXPECT_EQ(message.find("second failure"), std::string::npos) << message;
  // Reported once; the queue runs new work again.
  queue_->host_call([&after] { after += 10; });
  queue_->synchronize();
  EXPECT_GE(after.load(), 10);
}

TEST_P(QueueTest, NonPetaringExceptionsBecomeInternalErrors) {
  queue_->host_call([] { throw std::runtime_error("plain exception"); });
  expect_error([&] { queue_->synchronize(); }, ErrorKind::kInternal,
               {queue_->name(), "plain exception"});
}

TEST_P(QueueTest, EventWaitRethrowsAnErrorRaisedBeforeIt) {
  queue_->host_call([] { PR_FAIL(kDisconnected, "peer 3 went away"); });
  std::unique_ptr<Event> event = queue_->record();
  expect_error([&] { event->wait(); }, ErrorKind::kDisconnected, {queue_->name(), "peer 3"});
  expect_error([&] { queue_->synchronize(); }, ErrorKind::kDisconnected, {"peer 3"});
}

TEST_P(QueueTest, EventWaitTimesOutNamingTheQueue) {
  queue_->host_call([] { std::this_thread::sleep_for(300ms); });
  std::unique_ptr<Event> event = queue_->record();
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { event->wait(20ms); }, ErrorKind::kTimeout, {queue_->name()});
  EXPECT_LT(std::chrono::steady_clock::now() - start, 250ms);
  event->wait();  // completes once the sleep ends
  queue_->synchronize();
}

TEST_P(QueueTest, DestructorDrainsEnqueuedWork) {
  std::atomic<int> done{0};
  {
    std::unique_ptr<Queue> queue = device_->create_queue(QueueKind::kCompute);
    for (int i = 0; i < 5; ++i) {
      queue->host_call([&done] {
        std::this_thread::sleep_for(10ms);
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 5);
}

TEST_P(QueueTest, CopiesAndReadsSeeEarlierKernels) {
  Tensor src = make({16}), dst = make({16});
  kernels::fill(*queue_, src, 4.0f);
  queue_->copy(dst, src);
  std::vector<float> out(16, 0.0f);
  queue_->read(out.data(), dst);
  queue_->synchronize();
  for (float v : out) EXPECT_EQ(v, 4.0f);
  expect_error([&] { queue_->copy(dst, src.slice(0, {8})); }, ErrorKind::kInvalidArgument,
               {"(8)", "(16)"});
}

PETARING_INSTANTIATE_DEVICE_SUITE(QueueTest);

}  // namespace
}  // namespace petaring::testing
