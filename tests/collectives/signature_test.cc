// Ranks that disagree on a collective call get an error naming both calls (signature.h),
// quickly and on every rank; point-to-point send/recv; two groups in flight at once.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "tests/collectives/rank_threads.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using testing_ranks::error_of;
using testing_ranks::make_transport_group;
using testing_ranks::run_group;
using testing_ranks::transport_kind_name;
using testing_ranks::TransportKind;
using testing_ranks::expect_no_errors;
using testing_ranks::run_ranks;
using Clock = std::chrono::steady_clock;

// Every rank calls `call` (with its communicator) once, with a 20 s timeout; all of them
// must fail fast (well under the timeout) with kFailedPrecondition naming `want` (each
// string), then a correct allreduce on the same communicators must still work.
void expect_mismatch_reported(int n, const std::function<void(Communicator&)>& call,
                              const std::vector<std::string>& want,
                              TransportKind kind = TransportKind::kLocal) {
  auto start = Clock::now();
  std::vector<float> after(static_cast<size_t>(n));
  auto errors = run_group(make_transport_group(kind, n), [&](std::unique_ptr<Communicator>& slot) {
    Communicator& comm = *slot;
    try {
      call(comm);
    } catch (const Error&) {
      float value = static_cast<float>(comm.rank());
      comm.allreduce(&value, 1, DType::kF32, ReduceOp::kMax);
      after[comm.rank()] = value;
      throw;
    }
  });
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5)) << "the mismatch was not reported fast";
  for (int rank = 0; rank < n; ++rank) {
    Error error = error_of(errors[rank]);
    std::string text = error.what();
    EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << "rank " << rank << ": " << text;
    for (const std::string& piece : want) {
      EXPECT_NE(text.find(piece), std::string::npos) << "rank " << rank << " lacks '" << piece
                                                     << "': " << text;
    }
    EXPECT_EQ(after[rank], static_cast<float>(n - 1)) << "rank " << rank << " after the error";
  }
}

TEST(SignatureCheck, CountMismatchNamesBothRanksAndCalls) {
  for (int n : {2, 3, 5, 8}) {
    SCOPED_TRACE(testing::Message() << n << " ranks");
    expect_mismatch_reported(n, [](Communicator& comm) {
      std::vector<float> data(100, 1.0f);
      size_t count = comm.rank() == 1 ? 99 : 100;
      comm.allreduce(data.data(), count, DType::kF32, ReduceOp::kSum);
    }, {"rank 0 called allreduce #0 (count 100, f32, sum)",
        "rank 1 called allreduce #0 (count 99, f32, sum)"});
  }
}

// Small allreduces send their first message before the check (recursive_doubling.h); a
// rank on that path and one on the ring's (above the small-message threshold) still both
// get the mismatch error, and the communicators stay usable.
TEST(SignatureCheck, CountMismatchAcrossTheSmallMessageThreshold) {
  for (int n : {2, 3, 4}) {
    SCOPED_TRACE(testing::Message() << n << " ranks");
    expect_mismatch_reported(n, [](Communicator& comm) {
      std::vector<float> data(100000, 1.0f);
      size_t count = comm.rank() == 1 ? 100000 : 100;
      comm.allreduce(data.data(), count, DType::kF32, ReduceOp::kSum);
    }, {"rank 0 called allreduce #0 (count 100, f32, sum)",
        "rank 1 called allreduce #0 (count 100000, f32, sum)"});
  }
}

// The ring collectives run the check while their first segment travels (ring_steps.h):
// a mismatch between two calls that both take the ring, with segments already in flight
// on real sockets and shared memory, is still the mismatch error on every rank, and the
// transports stay usable afterwards.
TEST(SignatureCheck, RingCallsOverEveryTransport) {
  for (TransportKind kind : {TransportKind::kLocal, TransportKind::kTcp, TransportKind::kShm}) {
    for (int n : {2, 3}) {
      SCOPED_TRACE(testing::Message() << transport_kind_name(kind) << ", " << n << " ranks");
      expect_mismatch_reported(n, [](Communicator& comm) {
        std::vector<float> data(300000, 1.0f);
        size_t count = comm.rank() == 1 ? 200000 : 300000;
        comm.allreduce(data.data(), count, DType::kF32, ReduceOp::kSum);
      }, {"rank 0 called allreduce #0 (count 300000, f32, sum)",
          "rank 1 called allreduce #0 (count 200000, f32, sum)"}, kind);
      expect_mismatch_reported(n, [n](Communicator& comm) {
        std::vector<float> in(3 * 100000, 1.0f), out(100000);
        ReduceOp op = comm.rank() == n - 1 ? ReduceOp::kMax : ReduceOp::kSum;
        comm.reduce_scatter(in.data(), out.data(), 100000 / n, DType::kF32, op);
      }, {"rank 0 called reduce_scatter #0", str_cat("rank ", n - 1, " called reduce_scatter #0 (count ",
          100000 / n, ", f32, max)")}, kind);
      expect_mismatch_reported(n, [](Communicator& comm) {
        std::vector<int32_t> in(50000, 1), out(3 * 50000);
        size_t count = comm.rank() == 0 ? 50000 : 40000;
        comm.allgather(in.data(), out.data(), count, DType::kI32);
      }, {"rank 0 called allgather #0 (count 50000, i32)", "rank 1 called allgather #0 (count 40000, i32)"},
         kind);
    }
  }
}

TEST(SignatureCheck, DTypeAndOpMismatch) {
  expect_mismatch_reported(4, [](Communicator& comm) {
    std::vector<int32_t> data(10, 1);
    DType dtype = comm.rank() == 1 ? DType::kI32 : DType::kF32;  // same bytes, other values
    comm.allreduce(data.data(), data.size(), dtype, ReduceOp::kSum);
  }, {"rank 0 called allreduce #0 (count 10, f32, sum)", "rank 1 called allreduce #0 (count 10, i32, sum)"});
  expect_mismatch_reported(4, [](Communicator& comm) {
    std::vector<float> data(10, 1.0f);
    ReduceOp op = comm.rank() == 3 ? ReduceOp::kMax : ReduceOp::kSum;
    comm.allreduce(data.data(), data.size(), DType::kF32, op);
  }, {"rank 0 called allreduce #0 (count 10, f32, sum)", "rank 3 called allreduce #0 (count 10, f32, max)"});
}

// A rank that calls another collective at the same point.
TEST(SignatureCheck, OtherCollective) {
  expect_mismatch_reported(3, [](Communicator& comm) {
    std::vector<float> data(10, 1.0f);
    if (comm.rank() == 2) comm.broadcast(data.data(), 40, 0);
    else comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
  }, {"rank 0 called allreduce #0", "rank 2 called broadcast #0 (40 bytes, root 0)"});
}

TEST(PointToPoint, PairsInOrderAndNamesThePeer) {
  expect_no_errors(run_ranks(3, [](Communicator& comm) {
    // Rank 0 sends two messages to each of the others; they answer with the sum.
    if (comm.rank() == 0) {
      for (int peer : {1, 2}) {
        std::vector<int64_t> first = {peer, 10}, second = {peer * 100};
        comm.send(first.data(), 16, peer);
        comm.send(second.data(), 8, peer);
      }
      for (int peer : {2, 1}) {
        int64_t answer = 0;
        comm.recv(&answer, 8, peer);
        EXPECT_EQ(answer, peer + 10 + peer * 100) << "from rank " << peer;
      }
    } else {
      int64_t first[2] = {}, second = 0;
      comm.recv(first, 16, 0);
      comm.recv(&second, 8, 0);
      int64_t answer = first[0] + first[1] + second;
      comm.send(&answer, 8, 0);
    }
    float value = 1.0f;  // collectives keep their own sequence beside the pairs'
    comm.allreduce(&value, 1, DType::kF32, ReduceOp::kSum);
    EXPECT_EQ(value, 3.0f);
  }));
  auto errors = run_ranks(2, [](Communicator& comm) {
    char byte = 0;
    if (comm.rank() == 0) comm.recv(&byte, 1, 1);
  }, std::chrono::milliseconds(100));
  std::string text = error_of(errors[0]).what();
  EXPECT_EQ(error_of(errors[0]).kind(), ErrorKind::kTimeout) << text;
  EXPECT_NE(text.find("recv #0 of 1 bytes from rank 1"), std::string::npos) << text;
  errors = run_ranks(2, [](Communicator& comm) { comm.send("x", 1, comm.rank()); });
  EXPECT_EQ(error_of(errors[0]).kind(), ErrorKind::kInvalidArgument) << error_of(errors[0]).what();
}

// Two groups over the same threads, thread t being rank t of group A and rank n-1-t of
// group B; calls alternate between the groups, so both have messages in flight at once.
TEST(TwoCommunicators, InterleavedOnTheSameThreads) {
  const int n = 4;
  auto transports_a = make_local_transports(n), transports_b = make_local_transports(n);
  std::vector<std::unique_ptr<Communicator>> a, b;
  for (int t = 0; t < n; ++t) {
    a.push_back(std::make_unique<Communicator>(std::move(transports_a[t])));
    b.push_back(std::make_unique<Communicator>(std::move(transports_b[n - 1 - t])));
  }
  std::vector<std::string> failures(n);
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      try {
        Communicator& ca = *a[t];
        Communicator& cb = *b[t];
        ca.set_timeout(std::chrono::seconds(20));
        cb.set_timeout(std::chrono::seconds(20));
        for (int round = 0; round < 20; ++round) {
          std::vector<int64_t> xa(1000 + round, ca.rank() + 1), xb(33, (cb.rank() + 1) * 10);
          ca.allreduce(xa.data(), xa.size(), DType::kI64, ReduceOp::kSum);
          cb.allreduce(xb.data(), xb.size(), DType::kI64, ReduceOp::kMax);
          std::vector<int64_t> gathered(n);
          int64_t mine = cb.rank();
          cb.allgather(&mine, gathered.data(), 1, DType::kI64);
          if (xa.front() != n * (n + 1) / 2 || xa.back() != xa.front() || xb[7] != n * 10) {
            failures[t] = "wrong reduction in round " + std::to_string(round);
          }
          for (int r = 0; r < n; ++r) {
            if (gathered[r] != r) failures[t] = "wrong gather in round " + std::to_string(round);
          }
        }
      } catch (const std::exception& error) {
        failures[t] = error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < n; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

}  // namespace
}  // namespace petaring
