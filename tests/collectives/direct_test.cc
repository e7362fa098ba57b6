// The direct collectives (direct.h) beyond the conformance suite's results: which
// transports offer peer memory and that every rank agrees, the communicator's choice and
// its switch, and faults: a rank whose copy fails, a rank that never comes, and that no
// rank returns while a peer may still write into its buffers.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/direct.h"
#include "collectives/store/file_store.h"
#include "collectives/transport/shm/shm_transport.h"
#include "collectives/transport/local/local_transport.h"
#include "runtime/error.h"
#include "tests/collectives/rank_threads.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using testing_ranks::error_of;
using testing_ranks::expect_no_errors;
using testing_ranks::make_transport_group;
using testing_ranks::run_group;
using testing_ranks::TransportGroupOptions;
using testing_ranks::TransportKind;

// A transport that forwards to `inner` but whose peer memory fails once `fail_after`
// copies have gone through (a stand-in for a peer's buffer vanishing mid-call), and can
// be slowed down (each copy sleeps `delay`), to catch a rank that returns too early.
class TroubledMemoryTransport : public Transport, public PeerMemory {
 public:
  TroubledMemoryTransport(std::unique_ptr<Transport> inner, int fail_after,
                          std::chrono::milliseconds delay)
      : inner_(std::move(inner)), fail_after_(fail_after), delay_(delay) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string name() const override { return inner_->name(); }
  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes, uint64_t tag) override {
    return inner_->isend(peer, data, bytes, tag);
  }
  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override {
    return inner_->irecv(peer, data, bytes, tag);
  }
  void abort() override { inner_->abort(); }
  PeerMemory* peer_memory() override { return this; }

  bool reaches(int peer) const override { return inner_->peer_memory()->reaches(peer); }
  void read(int peer, uint64_t remote, void* local, size_t bytes) override {
    step(peer);
    inner_->peer_memory()->read(peer, remote, local, bytes);
  }
  void write(int peer, const void* local, uint64_t remote, size_t bytes) override {
    step(peer);
    inner_->peer_memory()->write(peer, local, remote, bytes);
  }

 private:
  void step(int peer) {
    std::this_thread::sleep_for(delay_);
    if (fail_after_ >= 0 && copies_++ >= fail_after_) {
      PR_FAIL(kFailedPrecondition, "rank ", rank(), ": copy from rank ", peer,
              " failed (test fault)");
    }
  }

  std::unique_ptr<Transport> inner_;
  int fail_after_;  // -1: never
  std::chrono::milliseconds delay_;
  int copies_ = 0;
};

std::vector<std::unique_ptr<Transport>> troubled_group(int n, int failing_rank, int fail_after,
                                                       int slow_rank) {
  std::vector<std::unique_ptr<Transport>> out;
  for (auto& transport : make_local_transports(n)) {
    const int r = transport->rank();
    out.push_back(std::make_unique<TroubledMemoryTransport>(
        std::move(transport), r == failing_rank ? fail_after : -1,
        std::chrono::milliseconds(r == slow_rank ? 20 : 0)));
  }
  return out;
}

TEST(DirectTransports, LocalAndShmReachEveryPeerTcpDoesNot) {
  for (TransportKind kind : {TransportKind::kLocal, TransportKind::kShm, TransportKind::kTcp}) {
    SCOPED_TRACE(testing_ranks::transport_kind_name(kind));
    auto group = make_transport_group(kind, 3);
    const bool first = peer_memory_of_all(*group[0]) != nullptr;
    for (auto& transport : group) {
      EXPECT_EQ(peer_memory_of_all(*transport) != nullptr, first) << "ranks disagree";
    }
    if (kind == TransportKind::kLocal) {
      EXPECT_TRUE(first);
    }
    if (kind == TransportKind::kTcp) {
      EXPECT_FALSE(first);
    }
    if (kind == TransportKind::kShm && !first) {
      std::printf("note: this system refuses cross-memory attach; shm has no peer memory\n");
    }
  }
}

TEST(DirectTransports, ShmWithSingleCopyOffHasNoPeerMemory) {
  TransportGroupOptions options;
  options.shm_waits = ShmTransportOptions{};
  options.shm_waits->single_copy = false;
  for (auto& transport : make_transport_group(TransportKind::kShm, 2, options)) {
    EXPECT_EQ(transport->peer_memory(), nullptr);
  }
}

// One rank with single copy off: no rank offers peer memory (they agree at start-up).
TEST(DirectTransports, ShmAgreesOnOffWhenOneRankTurnsItOff) {
  std::vector<std::unique_ptr<Transport>> transports(3);
  std::vector<std::string> errors(3);
  char pattern[] = "/tmp/petaring-direct-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 3; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        FileStore store(pattern);
        ShmTransportOptions options;
        options.connect_timeout = std::chrono::seconds(10);
        options.single_copy = rank != 1;
        transports[rank] = make_shm_transport(store, rank, 3, options);
      } catch (const std::exception& error) {
        errors[rank] = error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::filesystem::remove_all(pattern);
  for (int rank = 0; rank < 3; ++rank) {
    ASSERT_EQ(errors[rank], "") << "rank " << rank;
    EXPECT_EQ(transports[rank]->peer_memory(), nullptr) << "rank " << rank;
  }
}

// A sub-group reaches its members through the parent's peer memory.
TEST(DirectTransports, SplitGroupsKeepPeerMemory) {
  expect_no_errors(testing_ranks::run_ranks(4, [](Communicator& comm) {
    auto half = comm.split(comm.rank() % 2, comm.rank());
    ASSERT_NE(half, nullptr);
    EXPECT_NE(peer_memory_of_all(half->transport()), nullptr);
    EXPECT_STREQ(half->allreduce_algorithm(1 << 20), "direct");
    std::vector<int64_t> data(100'003, comm.rank());
    half->allreduce(data.data(), data.size(), DType::kI64, ReduceOp::kSum);
    const int64_t expected = comm.rank() % 2 == 0 ? 0 + 2 : 1 + 3;
    EXPECT_EQ(data.front(), expected);
    EXPECT_EQ(data.back(), expected);
  }));
}

TEST(DirectCommunicator, PicksDirectAboveTheThresholdUnlessTurnedOff) {
  expect_no_errors(testing_ranks::run_ranks(2, [](Communicator& comm) {
    EXPECT_STREQ(comm.allreduce_algorithm(Communicator::kDefaultSmallMessageThreshold),
                 "recursive-doubling");
    EXPECT_STREQ(comm.allreduce_algorithm(Communicator::kDefaultSmallMessageThreshold + 1), "direct");
    comm.set_single_copy(false);
    EXPECT_STREQ(comm.allreduce_algorithm(Communicator::kDefaultSmallMessageThreshold + 1), "ring");
  }));
}

TEST(DirectCommunicator, EnvironmentSwitchIsReadAndChecked) {
  ASSERT_EQ(setenv("PETARING_SINGLE_COPY", "0", 1), 0);
  {
    Communicator comm(std::move(make_local_transports(2)[0]));
    EXPECT_STREQ(comm.allreduce_algorithm(1 << 20), "ring");
  }
  ASSERT_EQ(setenv("PETARING_SINGLE_COPY", "yes", 1), 0);
  try {
    Communicator comm(std::move(make_local_transports(2)[0]));
    ADD_FAILURE() << "PETARING_SINGLE_COPY=yes was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("PETARING_SINGLE_COPY='yes'"), std::string::npos)
        << error.what();
  }
  unsetenv("PETARING_SINGLE_COPY");
  Communicator comm(std::move(make_local_transports(2)[0]));
  EXPECT_STREQ(comm.allreduce_algorithm(1 << 20), "direct");
}

// Rank 1's second copy fails: it throws its own error; every other rank throws that
// error's kind and text, naming rank 1; none hangs.
TEST(DirectFaults, AFailedCopyIsReportedByEveryRank) {
  const int n = 4;
  auto errors = run_group(troubled_group(n, /*failing_rank=*/1, /*fail_after=*/1, -1),
                          [](std::unique_ptr<Communicator>& comm) {
    std::vector<float> data(1 << 16, 1.0f);
    direct_allreduce(comm->transport(), data.data(), data.data(), data.size(), DType::kF32,
                     ReduceOp::kSum, DirectOptions{4096, comm->timeout(), 7, {}});
  }, std::chrono::seconds(5));
  EXPECT_NE(std::string(error_of(errors[1]).what()).find("copy from rank"), std::string::npos)
      << error_of(errors[1]).what();
  for (int r : {0, 2, 3}) {
    Error error = error_of(errors[r]);
    const std::string text = error.what();
    EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << text;
    EXPECT_NE(text.find("rank " + std::to_string(r) + ": rank 1 failed during the direct allreduce"),
              std::string::npos) << text;
    EXPECT_NE(text.find("(test fault)"), std::string::npos) << text;
  }
}

// A rank that never calls: the others time out naming it (signature check off, so that
// the first wait is on the address records).
TEST(DirectFaults, MissingRankTimesOutNamingIt) {
  auto errors = testing_ranks::run_ranks(3, [](Communicator& comm) {
    comm.set_check_signatures(false);
    std::vector<float> data(1 << 16, 1.0f);
    comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
  }, std::chrono::milliseconds(150), /*absent=*/{1});
  for (int r : {0, 2}) {
    Error error = error_of(errors[r]);
    EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
    EXPECT_NE(std::string(error.what()).find("from rank 1"), std::string::npos) << error.what();
  }
}

// With the signature check off, a rank passing another count must not make its peers
// copy past the end of anyone's buffer: every rank fails before any copy, buffers intact.
TEST(DirectFaults, MismatchedSizesFailBeforeAnyCopyWithTheCheckOff) {
  const size_t count = 50'000;
  auto errors = testing_ranks::run_ranks(3, [&](Communicator& comm) {
    comm.set_check_signatures(false);
    ASSERT_STREQ(comm.allreduce_algorithm(count * sizeof(float)), "direct");
    std::vector<float> data(count + 1, static_cast<float>(comm.rank() + 1));
    const size_t mine = comm.rank() == 2 ? count + 1 : count;
    try {
      comm.allreduce(data.data(), mine, DType::kF32, ReduceOp::kSum);
    } catch (...) {
      size_t changed = 0;
      for (float value : data) changed += value != static_cast<float>(comm.rank() + 1);
      EXPECT_EQ(changed, 0u) << "rank " << comm.rank() << "'s buffer was written";
      throw;
    }
  }, std::chrono::seconds(10));
  for (int r = 0; r < 3; ++r) {
    Error error = error_of(errors[r]);
    EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << error.what();
    EXPECT_NE(std::string(error.what()).find("every rank must pass the same count"),
              std::string::npos) << error.what();
  }
}

// abort() stops a long direct allreduce between pieces: 2 ranks whose every copy takes
// 20 ms (128 pieces of 256 KiB each way: ~5 s), aborted after 200 ms.
TEST(DirectFaults, AbortStopsTheCopiesBetweenPieces) {
  std::vector<std::unique_ptr<Communicator>> comms;
  for (auto& transport : make_local_transports(2)) {
    comms.push_back(std::make_unique<Communicator>(std::make_unique<TroubledMemoryTransport>(
        std::move(transport), -1, std::chrono::milliseconds(20))));
  }
  const size_t count = size_t{16} << 20;  // 64 MiB of f32 per rank
  std::vector<std::exception_ptr> errors(2);
  std::vector<std::thread> ranks;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      std::vector<float> data(count, 1.0f);
      try {
        comms[r]->allreduce(data.data(), count, DType::kF32, ReduceOp::kSum);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (auto& comm : comms) comm->abort();
  for (auto& rank : ranks) rank.join();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500)) << "the copies went on after abort()";
  for (int r = 0; r < 2; ++r) {
    Error error = error_of(errors[r]);
    EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << error.what();
    EXPECT_NE(std::string(error.what()).find("aborted"), std::string::npos) << error.what();
  }
}

// Once abort() has returned, no peer touches the aborted rank's memory: rank 0 aborts and
// frees its buffer (64 MiB: unmapped at once, so a late copy into it would crash, or fail
// with EFAULT over shm) while rank 1 is still copying slowly; rank 1's next copy stops at
// rank 0's gate. Over local and shm (cross-memory attach, here into this same process).
TEST(DirectFaults, AnAbortedRanksBuffersAreLeftAloneOnceAbortReturns) {
  for (TransportKind kind : {TransportKind::kLocal, TransportKind::kShm}) {
    SCOPED_TRACE(testing_ranks::transport_kind_name(kind));
    auto group = make_transport_group(kind, 2);
    if (peer_memory_of_all(*group[0]) == nullptr) {
      std::printf("note: no peer memory over %s here; case not run\n",
                  testing_ranks::transport_kind_name(kind));
      continue;
    }
    std::vector<std::unique_ptr<Communicator>> comms;
    for (auto& transport : group) {
      const int r = transport->rank();
      comms.push_back(std::make_unique<Communicator>(std::make_unique<TroubledMemoryTransport>(
          std::move(transport), -1, std::chrono::milliseconds(r == 1 ? 20 : 0))));
      comms.back()->set_timeout(std::chrono::milliseconds(1000));
    }
    const size_t count = size_t{16} << 20;
    std::vector<std::exception_ptr> errors(2);
    auto run = [&](int r) {
      auto data = std::make_unique<std::vector<float>>(count, 1.0f);
      try {
        comms[r]->allreduce(data->data(), count, DType::kF32, ReduceOp::kSum);
      } catch (...) {
        errors[r] = std::current_exception();
      }
      data.reset();  // the buffer goes at once
    };
    std::thread slow(run, 1);
    std::thread aborted(run, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    comms[0]->abort();
    aborted.join();
    slow.join();
    EXPECT_NE(std::string(error_of(errors[0]).what()).find("aborted"), std::string::npos)
        << error_of(errors[0]).what();
    EXPECT_NE(std::string(error_of(errors[1]).what()).find("rank 0 has aborted"),
              std::string::npos) << error_of(errors[1]).what();
  }
}

// Rank 2 copies slowly (20 ms a copy); the others finish their own blocks at once. None
// may return before rank 2 has written its block into their buffers: each checks its
// result the moment its call returns.
TEST(DirectFaults, NoRankReturnsBeforeEveryPeerIsDoneWithItsBuffers) {
  const int n = 3;
  const size_t count = 30'000;
  expect_no_errors(run_group(troubled_group(n, -1, -1, /*slow_rank=*/2),
                             [&](std::unique_ptr<Communicator>& comm) {
    std::vector<int32_t> data(count, comm->rank() + 1);
    direct_allreduce(comm->transport(), data.data(), data.data(), count, DType::kI32,
                     ReduceOp::kSum, DirectOptions{4096, comm->timeout(), 9, {}});
    size_t wrong = 0;
    for (int32_t value : data) wrong += value != 6;
    EXPECT_EQ(wrong, 0u) << "rank " << comm->rank() << " returned before its peers were done";
  }));
}

}  // namespace
}  // namespace petaring
