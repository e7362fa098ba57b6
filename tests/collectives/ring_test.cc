// Ring allreduce, broadcast and barrier over the in-process transport: each rank is a
// thread. Results are compared with a serial reference computed in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/ring.h"
#include "collectives/transport/local/local_transport.h"
#include "tests/collectives/rank_threads.h"
#include "tests/collectives/transport_group.h"
#include "runtime/error.h"

namespace petaring {
namespace {

using testing_ranks::error_of;
using testing_ranks::expect_no_errors;
using testing_ranks::run_ranks;

// The input of `rank` at element i: varied magnitudes and signs so that rounding shows.
float input_value(int rank, size_t i, uint64_t salt = 0) {
  uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull ^ (rank + 1) * 0xbf58476d1ce4e5b9ull ^ salt;
  h ^= h >> 29;
  return static_cast<float>(static_cast<int64_t>(h % 20001) - 10000) / 997.0f;
}

std::vector<float> make_input(int rank, size_t count, uint64_t salt = 0) {
  std::vector<float> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = input_value(rank, i, salt);
  return data;
}

// Checks `result` against the double-precision sum (or mean) over `size` ranks, with a
// bound on float rounding of a sum of `size` terms.
void expect_matches_reference(const std::vector<float>& result, int size, ReduceOp op,
                              uint64_t salt = 0) {
  int reported = 0;
  for (size_t i = 0; i < result.size(); ++i) {
    double sum = 0, magnitude = 0;
    for (int rank = 0; rank < size; ++rank) {
      sum += input_value(rank, i, salt);
      magnitude += std::fabs(input_value(rank, i, salt));
    }
    double expected = op == ReduceOp::kAverage ? sum / size : sum;
    double scale = op == ReduceOp::kAverage ? magnitude / size : magnitude;
    double tolerance = (size + 1) * 1.2e-7 * scale + 1e-30;
    if (std::fabs(result[i] - expected) > tolerance && reported++ < 5) {
      ADD_FAILURE() << "element " << i << " of " << result.size() << ": got " << result[i]
                    << ", expected " << expected << " (world " << size << ")";
    }
  }
}

// Runs one allreduce on every rank and checks the reference and bit-identity across ranks.
void check_allreduce(int size, size_t count, ReduceOp op) {
  SCOPED_TRACE(testing::Message() << "world " << size << ", count " << count << ", "
                                  << (op == ReduceOp::kSum ? "sum" : "average"));
  std::vector<std::vector<float>> results(size);
  expect_no_errors(run_ranks(size, [&](Communicator& comm) {
    std::vector<float> data = make_input(comm.rank(), count);
    comm.allreduce(data.data(), count, DType::kF32, op);
    results[comm.rank()] = std::move(data);
  }));
  expect_matches_reference(results[0], size, op);
  for (int rank = 1; rank < size; ++rank) {
    ASSERT_EQ(results[rank].size(), count);
    EXPECT_EQ(0, std::memcmp(results[rank].data(), results[0].data(), count * sizeof(float)))
        << "rank " << rank << " differs from rank 0";
  }
}

TEST(RingAllreduce, SumAndAverageMatchReferenceOnAwkwardCounts) {
  for (int size = 1; size <= 6; ++size) {
    std::vector<size_t> counts = {0, 1, 2, 7, size_t(size - 1), size_t(size + 1), 13, 997, 65537};
    for (size_t count : counts) {
      check_allreduce(size, count, ReduceOp::kSum);
      check_allreduce(size, count, ReduceOp::kAverage);
    }
  }
}

TEST(RingAllreduce, EightRanks) {
  check_allreduce(8, 5, ReduceOp::kSum);
  check_allreduce(8, 4099, ReduceOp::kAverage);
}

// Tiny segments: every chunk travels as many messages, so the pipeline runs deep.
TEST(RingAllreduce, ManySegmentsPerChunk) {
  for (int size : {2, 3, 4}) {
    for (size_t count : {size_t(5), size_t(61), size_t(1031)}) {
      std::vector<std::vector<float>> results(size);
      expect_no_errors(run_ranks(size, [&](Communicator& comm) {
        std::vector<float> data = make_input(comm.rank(), count);
        RingOptions options;
        options.segment_bytes = 12;  // 3 floats
        options.timeout = std::chrono::seconds(20);
        ring_allreduce_f32(comm.transport(), data.data(), count, ReduceOp::kSum, options);
        results[comm.rank()] = std::move(data);
      }));
      expect_matches_reference(results[0], size, ReduceOp::kSum);
      for (int rank = 1; rank < size; ++rank) EXPECT_EQ(results[rank], results[0]);
    }
  }
}

TEST(RingAllreduce, BackToBackCallsWithDifferentCounts) {
  const int size = 4;
  std::vector<std::vector<float>> first(size), second(size);
  expect_no_errors(run_ranks(size, [&](Communicator& comm) {
    first[comm.rank()] = make_input(comm.rank(), 1001, 1);
    second[comm.rank()] = make_input(comm.rank(), 37, 2);
    comm.allreduce(first[comm.rank()].data(), 1001, DType::kF32, ReduceOp::kSum);
    comm.allreduce(second[comm.rank()].data(), 37, DType::kF32, ReduceOp::kAverage);
  }));
  expect_matches_reference(first[0], size, ReduceOp::kSum, 1);
  expect_matches_reference(second[0], size, ReduceOp::kAverage, 2);
  for (int rank = 1; rank < size; ++rank) {
    EXPECT_EQ(first[rank], first[0]);
    EXPECT_EQ(second[rank], second[0]);
  }
}

// The segment: an eighth of a chunk within [64 KiB, 1 MiB], raised to the transport's
// minimum (tcp asks for 256 KiB: a message costs it system calls and a frame).
TEST(RingSegments, TransportMinimumRaisesTheSegment) {
  constexpr size_t kKiB = 1024, kMiB = 1024 * 1024;
  EXPECT_EQ(ring_segment_bytes(kMiB / 4, 2, 4), 64 * kKiB);          // 1 MiB of f32, 2 ranks
  EXPECT_EQ(ring_segment_bytes(kMiB / 4, 2, 4, 256 * kKiB), 256 * kKiB);
  EXPECT_EQ(ring_segment_bytes(8 * kMiB / 4, 2, 4, 256 * kKiB), 512 * kKiB);  // above the minimum
  EXPECT_EQ(ring_segment_bytes(256 * kMiB / 4, 2, 4, 256 * kKiB), kMiB);      // the cap
  EXPECT_EQ(ring_segment_bytes(256 * kMiB / 4, 2, 4, 2 * kMiB), 2 * kMiB);    // a minimum above it

  using testing_ranks::make_transport_group;
  using testing_ranks::TransportKind;
  auto tcp = make_transport_group(TransportKind::kTcp, 2);
  EXPECT_EQ(tcp[0]->min_segment_bytes(), 256 * kKiB);
  EXPECT_EQ(make_transport_group(TransportKind::kLocal, 2)[0]->min_segment_bytes(), 0u);
  // A sub-group over tcp asks for what its root asks for.
  std::vector<std::unique_ptr<Transport>> subs(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] { subs[r] = tcp[r]->split({0, 1}, 7, 0, r); });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_NE(subs[0], nullptr);
  EXPECT_EQ(subs[0]->min_segment_bytes(), 256 * kKiB);
}

// Transport::irecv_reduce's default (a transport that does not combine on receive: here
// the in-process one) receives into a buffer of its own and combines at completion.
TEST(TransportDefaults, ReceivesThatReduceCombineWhenComplete) {
  auto transports = make_local_transports(2);
  ASSERT_FALSE(transports[0]->reduces_on_receive());
  std::vector<float> mine = {1, 2, 3, 4}, theirs = {10, -20, 30, -40};
  auto receive = transports[0]->irecv_reduce(1, mine.data(), 16, 5, DType::kF32, ReduceOp::kMax);
  EXPECT_FALSE(receive->test());
  transports[1]->isend(0, theirs.data(), 16, 5)->wait(std::chrono::seconds(5));
  receive->wait(std::chrono::seconds(5));
  EXPECT_EQ(mine, (std::vector<float>{10, 2, 30, 4}));
  EXPECT_TRUE(receive->test());  // combined once, not again
  EXPECT_EQ(mine, (std::vector<float>{10, 2, 30, 4}));
}

TEST(RingAllreduce, U8IsUnimplemented) {
  auto errors = run_ranks(2, [](Communicator& comm) {
    uint8_t values[4] = {};
    comm.allreduce(values, 4, DType::kU8, ReduceOp::kSum);
  });
  for (const auto& thrown : errors) {
    Error error = error_of(thrown);
    EXPECT_EQ(error.kind(), ErrorKind::kUnimplemented) << error.what();
    EXPECT_NE(std::string(error.what()).find("u8"), std::string::npos) << error.what();
  }
}

TEST(Broadcast, FromEveryRoot) {
  for (int size = 1; size <= 5; ++size) {
    for (int root = 0; root < size; ++root) {
      for (size_t bytes : {size_t(0), size_t(1), size_t(1000), size_t(1'000'003)}) {
        SCOPED_TRACE(testing::Message() << "world " << size << ", root " << root << ", bytes "
                                        << bytes);
        std::vector<std::vector<unsigned char>> results(size);
        expect_no_errors(run_ranks(size, [&](Communicator& comm) {
          std::vector<unsigned char> data(bytes);
          for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<unsigned char>(i * 7 + comm.rank() * 31);
          comm.broadcast(data.data(), bytes, root);
          results[comm.rank()] = std::move(data);
        }));
        for (int rank = 0; rank < size; ++rank) {
          size_t wrong = 0;
          for (size_t i = 0; i < bytes; ++i) {
            wrong += results[rank][i] != static_cast<unsigned char>(i * 7 + root * 31);
          }
          EXPECT_EQ(wrong, 0u) << "rank " << rank << " has " << wrong << " wrong bytes";
        }
      }
    }
  }
}

TEST(Broadcast, RootOutsideTheGroupIsInvalid) {
  auto errors = run_ranks(2, [](Communicator& comm) {
    char byte = 0;
    comm.broadcast(&byte, 1, 2);
  });
  for (auto& error : errors) {
    ASSERT_TRUE(error);
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    }
  }
}

// No rank may leave a barrier before every rank has entered it; late ranks arrive late.
TEST(Barrier, NoRankLeavesEarly) {
  for (int size : {1, 2, 3, 5, 6}) {
    std::atomic<int> arrived{0};
    std::atomic<int> early{0};
    expect_no_errors(run_ranks(size, [&](Communicator& comm) {
      for (int round = 1; round <= 3; ++round) {
        std::this_thread::sleep_for(std::chrono::milliseconds(comm.rank() * 2));
        arrived.fetch_add(1);
        comm.barrier();
        if (arrived.load() < round * size) early.fetch_add(1);
        comm.barrier();  // nobody starts the next round before all have checked
      }
    }));
    EXPECT_EQ(early.load(), 0) << "world " << size;
  }
}

TEST(RingAllreduce, MissingRankTimesOutNamingIt) {
  auto errors = run_ranks(2, [](Communicator& comm) {
    std::vector<float> data(100, 1.0f);
    comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
  }, std::chrono::milliseconds(150), /*absent=*/{1});
  Error error = error_of(errors[0]);
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_NE(std::string(error.what()).find("from rank 1"), std::string::npos) << error.what();
}

// With rank 2 of 4 missing, every other rank times out naming a peer it waited on (the
// signature check runs first, so that may be a rank that itself waits on rank 2); its
// right neighbour, which hears from rank 2 first, names it.
TEST(RingAllreduce, MissingRankStopsEveryOtherRank) {
  for (bool check : {true, false}) {
    SCOPED_TRACE(check ? "with signature check" : "without signature check");
    auto errors = run_ranks(4, [&](Communicator& comm) {
      comm.set_check_signatures(check);
      comm.set_small_message_threshold(0);  // the ring at every size
      comm.set_single_copy(false);
      std::vector<float> data(1000, 1.0f);
      comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kAverage);
    }, std::chrono::milliseconds(150), /*absent=*/{2});
    for (int rank : {0, 1, 3}) {
      Error error = error_of(errors[rank]);
      std::string text = error.what();
      EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << "rank " << rank << ": " << text;
      EXPECT_NE(text.find("from rank "), std::string::npos) << text;
      EXPECT_EQ(text.find("from rank " + std::to_string(rank)), std::string::npos) << text;
      // Without the check, each rank waits on its left neighbour in the ring.
      if (!check) {
        EXPECT_NE(text.find("from rank " + std::to_string((rank + 3) % 4)), std::string::npos)
            << text;
      }
    }
    EXPECT_NE(std::string(error_of(errors[3]).what()).find("from rank 2"), std::string::npos);
    EXPECT_FALSE(errors[2]);
  }
}

// Recursive doubling with rank 2 of 4 missing: every other rank times out; rank 3 (its
// partner at step 0) and rank 0 (its partner at step 1) name it.
TEST(RecursiveDoublingAllreduce, MissingRankStopsEveryOtherRank) {
  auto errors = run_ranks(4, [&](Communicator& comm) {
    comm.set_check_signatures(false);
    ASSERT_STREQ(comm.allreduce_algorithm(400), "recursive-doubling");
    std::vector<float> data(100, 1.0f);
    comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
  }, std::chrono::milliseconds(150), /*absent=*/{2});
  for (int rank : {0, 1, 3}) {
    Error error = error_of(errors[rank]);
    EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << "rank " << rank << ": " << error.what();
  }
  for (int rank : {0, 3}) {
    EXPECT_NE(std::string(error_of(errors[rank]).what()).find("from rank 2"), std::string::npos)
        << "rank " << rank << ": " << error_of(errors[rank]).what();
  }
}

TEST(Barrier, MissingRankTimesOut) {
  auto errors = run_ranks(3, [](Communicator& comm) { comm.barrier(); },
                          std::chrono::milliseconds(150), /*absent=*/{0});
  for (int rank : {1, 2}) {
    EXPECT_EQ(error_of(errors[rank]).kind(), ErrorKind::kTimeout) << "rank " << rank;
  }
}

}  // namespace
}  // namespace petaring
