// Asynchronous collectives (Communicator::*_async, Work), abort() and the timeout setting,
// over every transport that runs ranks as threads (local, tcp, shm: transport_group.h).
#include <gtest/gtest.h>

#include <stdlib.h>

#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using testing_ranks::error_of;
using testing_ranks::expect_no_errors;
using testing_ranks::make_transport_group;
using testing_ranks::run_group;
using testing_ranks::run_ranks;
using testing_ranks::TransportKind;
using testing_ranks::transport_kind_name;

class AsyncTest : public ::testing::TestWithParam<TransportKind> {};

// Several operations in flight at once, a blocking call queued behind them, and the
// results of each equal to the serial reference.
TEST_P(AsyncTest, OperationsInFlightRunInIssueOrderWithCorrectResults) {
  constexpr int kRanks = 3;
  constexpr size_t kBuckets = 4;
  constexpr size_t kCount = 100003;  // above the small-message threshold: the ring
  expect_no_errors(run_ranks(GetParam(), kRanks, [&](Communicator& comm) {
    const int r = comm.rank();
    std::vector<std::vector<int32_t>> buckets(kBuckets);
    std::vector<std::shared_ptr<Work>> works;
    for (size_t b = 0; b < kBuckets; ++b) {
      size_t count = b == 0 ? 5 : kCount + b;  // one small bucket: recursive doubling
      buckets[b].resize(count);
      for (size_t i = 0; i < count; ++i) buckets[b][i] = static_cast<int32_t>(i + b) * (r + 1);
      works.push_back(comm.allreduce_async(buckets[b].data(), count, DType::kI32, ReduceOp::kSum));
    }
    std::vector<int64_t> scatter_in(kRanks * 7), scatter_out(7);
    std::iota(scatter_in.begin(), scatter_in.end(), int64_t{r} * 1000);
    works.push_back(comm.reduce_scatter_async(scatter_in.data(), scatter_out.data(), 7,
                                              DType::kI64, ReduceOp::kMax));
    std::vector<int32_t> gathered(kRanks * 3), mine = {r, r * 10, r * 100};
    works.push_back(comm.allgather_async(mine.data(), gathered.data(), 3, DType::kI32));
    std::vector<int32_t> broadcast = {r, r, r, r};
    works.push_back(comm.broadcast_async(broadcast.data(), broadcast.size() * 4, 2));
    works.push_back(comm.barrier_async());
    // Blocking, queued behind the asynchronous work.
    float blocking = 1.0f + static_cast<float>(r);
    comm.allreduce(&blocking, 1, DType::kF32, ReduceOp::kMax);
    EXPECT_EQ(blocking, static_cast<float>(kRanks));
    for (auto& work : works) work->wait();
    for (auto& work : works) EXPECT_TRUE(work->test());
    const int32_t factor = kRanks * (kRanks + 1) / 2;
    for (size_t b = 0; b < kBuckets; ++b) {
      for (size_t i = 0; i < buckets[b].size(); ++i) {
        ASSERT_EQ(buckets[b][i], static_cast<int32_t>(i + b) * factor) << "bucket " << b;
      }
    }
    for (size_t i = 0; i < 7; ++i) {
      EXPECT_EQ(scatter_out[i], int64_t{kRanks - 1} * 1000 + r * 7 + static_cast<int64_t>(i));
    }
    for (int b = 0; b < kRanks; ++b) {
      EXPECT_EQ(gathered[b * 3], b);
      EXPECT_EQ(gathered[b * 3 + 2], b * 100);
    }
    EXPECT_EQ(broadcast, std::vector<int32_t>(4, 2));
  }));
}

// Waiting from another thread than the issuing one, and test() until done.
TEST_P(AsyncTest, WorkCanBeWaitedForFromAnotherThreadAndPolled) {
  expect_no_errors(run_ranks(GetParam(), 2, [&](Communicator& comm) {
    std::vector<float> data(50000, 1.0f + comm.rank());
    auto work = comm.allreduce_async(data.data(), data.size(), DType::kF32, ReduceOp::kAverage);
    std::thread waiter([&] { work->wait(); });
    waiter.join();
    EXPECT_TRUE(work->test());
    EXPECT_EQ(data.front(), 1.5f);
    EXPECT_EQ(data.back(), 1.5f);
    float value = 2.0f;
    auto polled = comm.allreduce_async(&value, 1, DType::kF32, ReduceOp::kSum);
    while (!polled->test()) std::this_thread::yield();
    polled->wait();
    EXPECT_EQ(value, 4.0f);
  }));
}

// An argument error of an asynchronous call comes out of wait(), on every wait, and the
// communicator keeps working afterwards.
TEST_P(AsyncTest, ErrorsComeOutOfWait) {
  expect_no_errors(run_ranks(GetParam(), 2, [&](Communicator& comm) {
    int32_t value = 1;
    auto bad = comm.broadcast_async(&value, 4, /*root=*/5);
    EXPECT_THROW(bad->wait(), Error);
    EXPECT_TRUE(bad->test());
    try {
      bad->wait();
      ADD_FAILURE() << "the second wait did not throw";
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find("root 5"), std::string::npos) << error.what();
    }
    comm.allreduce(&value, 1, DType::kI32, ReduceOp::kSum);
    EXPECT_EQ(value, 2);
  }));
}

// Rank 1 never joins: rank 0's operations can never complete. abort() fails the running
// one and the queued ones well before the (long) timeout, and later calls fail at once.
TEST_P(AsyncTest, AbortUnblocksEveryPendingOperation) {
  auto errors = run_group(
      make_transport_group(GetParam(), 2),
      [&](std::unique_ptr<Communicator>& comm) {
        if (comm->rank() != 0) return;
        std::vector<float> a(1000, 1.0f), b(100000, 1.0f);
        auto first = comm->allreduce_async(a.data(), a.size(), DType::kF32, ReduceOp::kSum);
        auto second = comm->allreduce_async(b.data(), b.size(), DType::kF32, ReduceOp::kSum);
        auto third = comm->barrier_async();
        EXPECT_FALSE(third->test());
        std::thread aborter([&] { comm->abort(); });
        aborter.join();
        EXPECT_TRUE(comm->aborted());
        for (auto* work : {&first, &second, &third}) {
          Error error = error_of([&] {
            try {
              (*work)->wait();
            } catch (...) {
              return std::current_exception();
            }
            return std::exception_ptr();
          }());
          EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << error.what();
          EXPECT_NE(std::string(error.what()).find("aborted"), std::string::npos) << error.what();
        }
        float value = 1.0f;
        EXPECT_THROW(comm->allreduce(&value, 1, DType::kF32, ReduceOp::kSum), Error);
        EXPECT_THROW(comm->allreduce_async(&value, 1, DType::kF32, ReduceOp::kSum)->wait(), Error);
      },
      std::chrono::minutes(10));
  expect_no_errors(errors);
}

// abort() from another thread also unblocks a blocking call on the issuing thread.
TEST_P(AsyncTest, AbortUnblocksABlockingCall) {
  auto errors = run_group(
      make_transport_group(GetParam(), 2),
      [&](std::unique_ptr<Communicator>& comm) {
        if (comm->rank() != 0) return;
        Communicator* raw = comm.get();
        // The issuing thread blocks in a barrier rank 1 never joins (queued behind another
        // one); another thread aborts, before or while it waits: either way it must throw.
        auto started = comm->barrier_async();
        std::thread aborter([raw] { raw->abort(); });
        EXPECT_THROW(comm->barrier(), Error);  // queued behind the first, then failed
        aborter.join();
        EXPECT_THROW(started->wait(), Error);
      },
      std::chrono::minutes(10));
  expect_no_errors(errors);
}

INSTANTIATE_TEST_SUITE_P(Transports, AsyncTest,
                         ::testing::Values(TransportKind::kLocal, TransportKind::kTcp,
                                           TransportKind::kShm),
                         [](const auto& info) { return transport_kind_name(info.param); });

TEST(CollectiveTimeoutTest, EnvironmentSetsTheTimeout) {
  setenv("PETARING_COLLECTIVE_TIMEOUT", "2.5", 1);
  auto comm = std::make_unique<Communicator>(std::move(make_local_transports(1)[0]));
  EXPECT_EQ(comm->timeout(), std::chrono::milliseconds(2500));
  setenv("PETARING_COLLECTIVE_TIMEOUT", "soon", 1);
  try {
    Communicator bad(std::move(make_local_transports(1)[0]));
    ADD_FAILURE() << "a bad PETARING_COLLECTIVE_TIMEOUT was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("PETARING_COLLECTIVE_TIMEOUT"), std::string::npos);
  }
  unsetenv("PETARING_COLLECTIVE_TIMEOUT");
  Communicator plain(std::move(make_local_transports(1)[0]));
  EXPECT_EQ(plain.timeout(), Communicator::kDefaultTimeout);
}

}  // namespace
}  // namespace petaring
